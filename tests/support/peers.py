"""Real RADIUS peers for the interoperability tests: Debian's FreeRADIUS and radsecproxy.

Each peer is configured from scratch in a directory of the test's own (no file under
/etc is read but FreeRADIUS's dictionaries and modules), listens on loopback ports picked
for it, logs to a file in that directory and is started and stopped by the test that
uses it: nothing depends on a system-wide instance (``scripts/bootstrap.sh`` keeps
Debian's freeradius service from starting). Readiness is polled with a deadline.

- ``FreeRadiusProxy``: FreeRADIUS as an operator's proxy in front of home servers
  (citywifi), one fail-over pool for authentication and one for accounting, liveness by
  Status-Server (RFC 5997), as a production ``proxy.conf`` would have it.
- ``FreeRadiusDae``: FreeRADIUS as the NAS side of RFC 5176, answering Disconnect-Requests
  with an ACK for the sessions it is told about and a NAK 503 for any other.
- ``RadSecProxy``: radsecproxy; ``radsec_pair`` chains two of them so that UDP from a NAS
  crosses TLS (RFC 6614) to UDP at citywifi. ``make_certs`` writes a CA and a certificate
  for 127.0.0.1 with openssl.
- ``ServeThread``: citywifi itself, on an event loop of its own, so that it can live as
  long as the module's peers.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import textwrap
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from controller.cli.serve import Controller
from controller.config import Config
from tests.support.redis_proc import free_port, wait_until

T = TypeVar("T")

FREERADIUS = shutil.which("freeradius") or "/usr/sbin/freeradius"
RADSECPROXY = shutil.which("radsecproxy") or "/usr/sbin/radsecproxy"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
START_TIMEOUT = 20.0


def installed(*binaries: str) -> bool:
    return all(Path(b).exists() for b in binaries)


def udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def udp_bound(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on UDP ``host:port`` (this machine's sockets table)."""
    table = "/proc/net/udp6" if ":" in host else "/proc/net/udp"
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return False
    wanted = f":{port:04X}"
    return any(line.split()[1].endswith(wanted) for line in lines if len(line.split()) > 1)


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Peer:
    """One peer process: its config under ``directory``, its output in ``log_path``."""

    name = "peer"

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: Sequence[str], ready: Callable[[], bool]) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            return ready()

        wait_until(up, START_TIMEOUT, 0.05, f"{self.name} ready ({self.log_path})")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ FreeRADIUS


@dataclass(frozen=True, slots=True)
class HomeServer:
    """A RADIUS server FreeRADIUS proxies to (a citywifi instance)."""

    name: str
    auth_port: int
    acct_port: int
    secret: str
    host: str = "127.0.0.1"


def _freeradius_base(directory: Path) -> str:
    """The global part of a radiusd.conf rooted in ``directory``: Debian's dictionaries and
    modules, everything else (logs, pid, state) under the directory; no user switch."""
    return textwrap.dedent(
        f"""
        prefix = /usr
        exec_prefix = /usr
        sysconfdir = {directory}
        localstatedir = {directory}
        sbindir = /usr/sbin
        logdir = {directory}
        raddbdir = {directory}
        radacctdir = {directory}
        name = freeradius
        confdir = {directory}
        modconfdir = {directory}
        run_dir = {directory}
        db_dir = {directory}
        libdir = /usr/lib/freeradius
        pidfile = {directory}/radiusd.pid
        dictdir = /usr/share/freeradius
        max_request_time = 30
        cleanup_delay = 0
        max_requests = 4096
        hostname_lookups = no
        log {{
          destination = stdout
          colourise = no
        }}
        security {{
          allow_core_dumps = no
          max_attributes = 200
          reject_delay = 0
          status_server = yes
        }}
        modules {{
          always ok {{
            rcode = ok
          }}
          always reject {{
            rcode = reject
          }}
        }}
        """
    )


class FreeRadius(Peer):
    """``freeradius -X`` (debug: one process, every packet in the log) on a config file."""

    name = "freeradius"

    def _start_config(self, text: str, ready_ports: Iterable[tuple[str, int]]) -> None:
        (self.dir / "radiusd.conf").write_text(text)
        ports = list(ready_ports)
        self._spawn(
            [FREERADIUS, "-X", "-d", str(self.dir), "-n", "radiusd"],
            lambda: (
                "Ready to process requests" in self.log()
                and all(udp_bound(port, host) for host, port in ports)
            ),
        )


class FreeRadiusProxy(FreeRadius):
    """FreeRADIUS proxying every request to a fail-over pool of ``homes`` (in order).

    NASes (``nas_secret``, from 127.0.0.1) send to ``auth_port`` / ``acct_port``. Home
    servers are checked with Status-Server (``status_check = status-server``); timers are
    the shortest FreeRADIUS accepts so failover shows within seconds: a home server that
    does not answer within ``response_window`` becomes a zombie (requests go to the next
    one), is pinged at once and every ``check_interval`` (at least 6 s), and a zombie that
    answers one ping is alive again (FreeRADIUS ``request_ping``).
    """

    def __init__(
        self,
        directory: Path,
        homes: Sequence[HomeServer],
        *,
        nas_secret: str,
        response_window: int = 1,
        zombie_period: int = 2,
    ) -> None:
        super().__init__(directory)
        self.homes = list(homes)
        self.nas_secret = nas_secret
        self.auth_port = udp_port()
        self.acct_port = udp_port()
        self.response_window = response_window
        self.zombie_period = zombie_period

    def _home(self, home: HomeServer, role: str) -> str:
        port = home.auth_port if role == "auth" else home.acct_port
        return textwrap.dedent(
            f"""
            home_server {home.name}-{role} {{
              type = {role}
              ipaddr = {home.host}
              port = {port}
              secret = {home.secret}
              src_ipaddr = 127.0.0.1
              response_window = {self.response_window}
              zombie_period = {self.zombie_period}
              status_check = status-server
              check_interval = 6
              check_timeout = 1
              num_answers_to_alive = 3
              revive_interval = 10
            }}
            """
        )

    def start(self) -> FreeRadiusProxy:
        homes = "".join(self._home(h, r) for h in self.homes for r in ("auth", "acct"))
        pools = "".join(
            f"home_server_pool citywifi-{role} {{\n  type = fail-over\n"
            + "".join(f"  home_server = {h.name}-{role}\n" for h in self.homes)
            + "}\n"
            for role in ("auth", "acct")
        )
        text = _freeradius_base(self.dir) + textwrap.dedent(
            f"""
            proxy_requests = yes
            proxy server {{
              default_fallback = no
            }}
            client nas {{
              ipaddr = 127.0.0.1
              secret = {self.nas_secret}
              require_message_authenticator = no
            }}
            realm citywifi {{
              auth_pool = citywifi-auth
              acct_pool = citywifi-acct
            }}
            server default {{
              listen {{
                type = auth
                ipaddr = 127.0.0.1
                port = {self.auth_port}
              }}
              listen {{
                type = acct
                ipaddr = 127.0.0.1
                port = {self.acct_port}
              }}
              authorize {{
                update control {{
                  &Proxy-To-Realm := "citywifi"
                }}
              }}
              authenticate {{
              }}
              preacct {{
                update control {{
                  &Proxy-To-Realm := "citywifi"
                }}
              }}
              accounting {{
                ok
              }}
            }}
            """
        )
        self._start_config(
            text + homes + pools,
            (("127.0.0.1", self.auth_port), ("127.0.0.1", self.acct_port)),
        )
        return self

    def home_state_lines(self, home: HomeServer, role: str = "acct") -> list[str]:
        """FreeRADIUS's log lines about the liveness of one home server port."""
        port = home.acct_port if role == "acct" else home.auth_port
        needle = f"port {port}"
        return [
            line
            for line in self.log().splitlines()
            if needle in line and ("Marking home server" in line or "status check" in line)
        ]


class FreeRadiusDae(FreeRadius):
    """FreeRADIUS as a NAS's RFC 5176 listener (Dynamic Authorization Server).

    It listens on one port on each of ``hosts`` and takes requests from ``clients`` with
    ``secret``. ``policy`` is the unlang of its ``recv-coa`` section, which FreeRADIUS
    runs for Disconnect-Requests too: ``ok`` answers Disconnect-ACK, ``reject``
    Disconnect-NAK (``rad_coa_recv``); ``update reply`` adds attributes to the answer.
    """

    def __init__(
        self,
        directory: Path,
        *,
        secret: str,
        policy: str,
        hosts: Sequence[str] = ("127.0.0.1",),
        clients: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        super().__init__(directory)
        self.secret = secret
        self.policy = policy
        self.hosts = list(hosts)
        self.clients = list(clients)
        self.port = _port_free_on(self.hosts)

    def start(self) -> FreeRadiusDae:
        clients = "".join(
            f"client dac{i} {{\n  ipaddr = {a}\n  secret = {self.secret}\n}}\n"
            for i, a in enumerate(self.clients)
        )
        listens = "".join(
            f"  listen {{\n    type = coa\n    ipaddr = {h}\n    port = {self.port}\n  }}\n"
            for h in self.hosts
        )
        policy = textwrap.indent(textwrap.dedent(self.policy).strip(), "    ")
        text = (
            _freeradius_base(self.dir)
            + clients
            + f"server dae {{\n{listens}  recv-coa {{\n{policy}\n  }}\n"
            + "  send-coa {\n    ok\n  }\n}\n"
        )
        self._start_config(text, ((h, self.port) for h in self.hosts))
        return self

    def requests(self) -> list[str]:
        """The log lines of the Disconnect-Requests it received."""
        return [line for line in self.log().splitlines() if "Received Disconnect-Request" in line]


def _port_free_on(hosts: Sequence[str]) -> int:
    """A UDP port free on every one of ``hosts`` (IPv4 and IPv6 loopback)."""
    for _ in range(50):
        port = udp_port()
        try:
            for host in hosts:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no UDP port free on all of {hosts}")


# ------------------------------------------------------------------------------ radsecproxy


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> TlsFiles:
    """A throw-away CA and one certificate (server and client use) for 127.0.0.1, with
    openssl: what RadSec needs (RFC 6614 §2.3: mutual certificate authentication)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "peer.key", directory / "peer.csr", directory / "peer.pem"
    ext = directory / "peer.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    )
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca_ext = ("-addext", "basicConstraints=critical,CA:TRUE")
    ca_ext += ("-addext", "keyUsage=critical,keyCertSign,cRLSign", "-subj", "/CN=test CA")
    signed = ("-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-extfile", ext)
    commands = [
        (OPENSSL, "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", *ca_ext),
        (OPENSSL, "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"),
        (OPENSSL, "x509", "-req", "-in", csr, *signed, "-out", cert, "-days", "2"),
    ]
    for command in commands:
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=60)
    return TlsFiles(ca, cert, key)


class RadSecProxy(Peer):
    """radsecproxy in the foreground on a generated config (``-f -d 5``: debug log)."""

    name = "radsecproxy"

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        super().__init__(directory)

    def start(self, config: str, ready: Callable[[], bool]) -> RadSecProxy:
        path = self.dir / f"{self.name}.conf"
        path.write_text(config)
        self._spawn([RADSECPROXY, "-f", "-d", "5", "-c", str(path)], ready)
        return self


@dataclass
class RadSecPair:
    """A NAS-side radsecproxy (UDP in, TLS out) and a server-side one (TLS in, UDP out)."""

    front: RadSecProxy
    back: RadSecProxy
    port: int  # where the NAS sends (both authentication and accounting)
    tls_port: int

    def stop(self) -> None:
        self.front.stop()
        self.back.stop()


def _tls_block(tls: TlsFiles) -> str:
    return textwrap.dedent(
        f"""
        tls default {{
            CACertificateFile {tls.ca}
            CertificateFile {tls.cert}
            CertificateKeyFile {tls.key}
        }}
        """
    )


def radsec_pair(
    directory: Path,
    *,
    nas_secret: str,
    auth: tuple[str, int],
    acct: tuple[str, int],
    secret: str,
) -> RadSecPair:
    """NAS -(UDP, ``nas_secret``)-> front -(TLS)-> back -(UDP, ``secret``)-> citywifi at
    ``auth`` / ``acct``. Both radsecproxies check the other's certificate."""
    tls = make_certs(directory / "pki")
    port, tls_port = udp_port(), free_port()
    back = RadSecProxy(directory, "radsecproxy-back")
    back.start(
        _tls_block(tls)
        + textwrap.dedent(
            f"""
            listenTLS 127.0.0.1:{tls_port}
            client front {{
                host 127.0.0.1
                type tls
                secret radsec
            }}
            server citywifi-auth {{
                host {auth[0]}
                port {auth[1]}
                type udp
                secret {secret}
            }}
            server citywifi-acct {{
                host {acct[0]}
                port {acct[1]}
                type udp
                secret {secret}
            }}
            realm * {{
                server citywifi-auth
                accountingServer citywifi-acct
            }}
            """
        ),
        lambda: tcp_open(tls_port),
    )
    front = RadSecProxy(directory, "radsecproxy-front")
    try:
        front.start(
            _tls_block(tls)
            + textwrap.dedent(
                f"""
                listenUDP 127.0.0.1:{port}
                client nas {{
                    host 127.0.0.1
                    type udp
                    secret {nas_secret}
                }}
                server back {{
                    host 127.0.0.1
                    port {tls_port}
                    type tls
                    secret radsec
                }}
                realm * {{
                    server back
                    accountingServer back
                }}
                """
            ),
            lambda: udp_bound(port),
        )
    except BaseException:
        back.stop()
        raise
    return RadSecPair(front, back, port, tls_port)


def wait_log(peer: Peer, needle: str, timeout: float = 10.0) -> None:
    wait_until(lambda: needle in peer.log(), timeout, 0.05, f"{needle!r} in {peer.log_path}")


# ------------------------------------------------------------------------- the citywifi side


class ServeThread:
    """A citywifi ``Controller`` on its own event loop in a thread.

    A peer started once per test module needs a citywifi that outlives each test's event
    loop; this one runs until ``stop()``. ``call`` runs a coroutine on its loop (issue a
    login, read the store, disconnect) and returns the result.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.controller: Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="citywifi", daemon=True)

    def start(self) -> ServeThread:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"citywifi did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        controller = Controller(self.config)
        await controller.start()
        self.controller = controller
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await controller.stop()

    @property
    def ctl(self) -> Controller:
        assert self.controller is not None
        return self.controller

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
