/*
 * radius._speedups: the compiled pieces of the RADIUS data path (issue 16).
 *
 * Optional. radius/packet.py stays the reference model and the fallback; this module
 * mirrors its hot functions exactly (same results, same PacketError reasons and
 * messages, same ValueErrors), and tests/test_speedups.py holds the two against each
 * other on random valid and mutated packets. radius/fastpath.py is the only importer.
 *
 *   bind(request_type, packet_error)   the Python types the codec returns and raises
 *   decode_request(data, secret, require_message_authenticator=True) -> Request
 *       RFC 2865 §3 header, §5 attributes, §5.26 Vendor-Specific split; Request
 *       Authenticator (RFC 2866 §3, RFC 5176 §2.3), Message-Authenticator (RFC 2869
 *       §5.14, RFC 3579 §3.2, RFC 5997 §3), BlastRADIUS rules (CVE-2024-3596).
 *   encode_reply(code, request, secret, attrs=b"", *, message_authenticator=None) -> bytes
 *       Message-Authenticator first, attrs, Proxy-States echoed (RFC 2865 §5.33),
 *       Response Authenticator (RFC 2865 §3).
 *   recv_batch(fd, max_count, bufsize=4096) -> [(bytes, address), ...]
 *   send_batch(fd, [(bytes, address), ...]) -> number sent
 *       recvmmsg(2)/sendmmsg(2) on a non-blocking UDP socket: one system call for many
 *       datagrams, which Python's socket API cannot do.
 *   md5(data), hmac_md5(key, data)      the digest used above, for the tests.
 *   accounting_values(attrs) -> tuple   an Accounting-Request's field values, as
 *       radius.events._accounting_values (RFC 2866 §5, RFC 2869 §5.1-5.2 Gigawords);
 *       bind_accounting() gives it the attribute numbers.
 *   Counters(bounds)                    the shell's per-answer counters, read at scrape
 *       and flush time (radius/metrics.py).
 *
 * MD5 (RFC 1321) and HMAC-MD5 (RFC 2104) are implemented here, self-contained, so the
 * module needs nothing beyond libc and the CPython headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ------------------------------------------------------------------ MD5, RFC 1321 */

typedef struct {
    uint32_t h[4];
    uint64_t total;
    unsigned char buf[64];
    size_t used;
} md5_ctx;

static const uint32_t md5_k[64] = {
    0xd76aa478U, 0xe8c7b756U, 0x242070dbU, 0xc1bdceeeU,
    0xf57c0fafU, 0x4787c62aU, 0xa8304613U, 0xfd469501U,
    0x698098d8U, 0x8b44f7afU, 0xffff5bb1U, 0x895cd7beU,
    0x6b901122U, 0xfd987193U, 0xa679438eU, 0x49b40821U,
    0xf61e2562U, 0xc040b340U, 0x265e5a51U, 0xe9b6c7aaU,
    0xd62f105dU, 0x02441453U, 0xd8a1e681U, 0xe7d3fbc8U,
    0x21e1cde6U, 0xc33707d6U, 0xf4d50d87U, 0x455a14edU,
    0xa9e3e905U, 0xfcefa3f8U, 0x676f02d9U, 0x8d2a4c8aU,
    0xfffa3942U, 0x8771f681U, 0x6d9d6122U, 0xfde5380cU,
    0xa4beea44U, 0x4bdecfa9U, 0xf6bb4b60U, 0xbebfbc70U,
    0x289b7ec6U, 0xeaa127faU, 0xd4ef3085U, 0x04881d05U,
    0xd9d4d039U, 0xe6db99e5U, 0x1fa27cf8U, 0xc4ac5665U,
    0xf4292244U, 0x432aff97U, 0xab9423a7U, 0xfc93a039U,
    0x655b59c3U, 0x8f0ccc92U, 0xffeff47dU, 0x85845dd1U,
    0x6fa87e4fU, 0xfe2ce6e0U, 0xa3014314U, 0x4e0811a1U,
    0xf7537e82U, 0xbd3af235U, 0x2ad7d2bbU, 0xeb86d391U,
};

#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
/* One step: a = b + rotl(a + f(b, c, d) + M[g] + K[i], s). */
#define STEP(f, a, b, c, d, g, i, s) \
    (a) += f((b), (c), (d)) + m[(g)] + md5_k[(i)]; \
    (a) = (b) + ROTL((a), (s))
#define MD5_F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MD5_G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define MD5_H(x, y, z) ((x) ^ (y) ^ (z))
#define MD5_I(x, y, z) ((y) ^ ((x) | ~(z)))

static void md5_block(uint32_t h[4], const unsigned char *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++) {
        m[i] = (uint32_t)p[4 * i] | ((uint32_t)p[4 * i + 1] << 8) |
               ((uint32_t)p[4 * i + 2] << 16) | ((uint32_t)p[4 * i + 3] << 24);
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 16; i += 4) {
        STEP(MD5_F, a, b, c, d, i, i, 7);
        STEP(MD5_F, d, a, b, c, i + 1, i + 1, 12);
        STEP(MD5_F, c, d, a, b, i + 2, i + 2, 17);
        STEP(MD5_F, b, c, d, a, i + 3, i + 3, 22);
    }
    for (int i = 16; i < 32; i += 4) {
        STEP(MD5_G, a, b, c, d, (5 * i + 1) & 15, i, 5);
        STEP(MD5_G, d, a, b, c, (5 * (i + 1) + 1) & 15, i + 1, 9);
        STEP(MD5_G, c, d, a, b, (5 * (i + 2) + 1) & 15, i + 2, 14);
        STEP(MD5_G, b, c, d, a, (5 * (i + 3) + 1) & 15, i + 3, 20);
    }
    for (int i = 32; i < 48; i += 4) {
        STEP(MD5_H, a, b, c, d, (3 * i + 5) & 15, i, 4);
        STEP(MD5_H, d, a, b, c, (3 * (i + 1) + 5) & 15, i + 1, 11);
        STEP(MD5_H, c, d, a, b, (3 * (i + 2) + 5) & 15, i + 2, 16);
        STEP(MD5_H, b, c, d, a, (3 * (i + 3) + 5) & 15, i + 3, 23);
    }
    for (int i = 48; i < 64; i += 4) {
        STEP(MD5_I, a, b, c, d, (7 * i) & 15, i, 6);
        STEP(MD5_I, d, a, b, c, (7 * (i + 1)) & 15, i + 1, 10);
        STEP(MD5_I, c, d, a, b, (7 * (i + 2)) & 15, i + 2, 15);
        STEP(MD5_I, b, c, d, a, (7 * (i + 3)) & 15, i + 3, 21);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

static void md5_init(md5_ctx *c)
{
    c->h[0] = 0x67452301U;
    c->h[1] = 0xefcdab89U;
    c->h[2] = 0x98badcfeU;
    c->h[3] = 0x10325476U;
    c->total = 0;
    c->used = 0;
}

static void md5_update(md5_ctx *c, const unsigned char *p, size_t n)
{
    c->total += n;
    if (c->used) {
        size_t take = 64 - c->used;
        if (take > n)
            take = n;
        memcpy(c->buf + c->used, p, take);
        c->used += take;
        p += take;
        n -= take;
        if (c->used < 64)
            return;
        md5_block(c->h, c->buf);
        c->used = 0;
    }
    while (n >= 64) {
        md5_block(c->h, p);
        p += 64;
        n -= 64;
    }
    if (n) {
        memcpy(c->buf, p, n);
        c->used = n;
    }
}

static void md5_final(md5_ctx *c, unsigned char out[16])
{
    uint64_t bits = c->total * 8;
    static const unsigned char pad[64] = {0x80};
    size_t padlen = (c->used < 56) ? 56 - c->used : 120 - c->used;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(bits >> (8 * i));
    md5_update(c, pad, padlen);
    md5_update(c, len, 8);
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (unsigned char)c->h[i];
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 3] = (unsigned char)(c->h[i] >> 24);
    }
}

/* HMAC-MD5 (RFC 2104): the two keyed states; the message is fed in between. */
typedef struct {
    md5_ctx inner;
    md5_ctx outer;
} hmac_ctx;

static void hmac_init(hmac_ctx *h, const unsigned char *key, size_t keylen)
{
    unsigned char k[64], pad[64];
    memset(k, 0, sizeof k);
    if (keylen > 64) {
        md5_ctx c;
        md5_init(&c);
        md5_update(&c, key, keylen);
        md5_final(&c, k);
    } else if (keylen) {
        memcpy(k, key, keylen);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    md5_init(&h->inner);
    md5_update(&h->inner, pad, 64);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    md5_init(&h->outer);
    md5_update(&h->outer, pad, 64);
}

static void hmac_final(hmac_ctx *h, unsigned char out[16])
{
    unsigned char inner[16];
    md5_final(&h->inner, inner);
    md5_update(&h->outer, inner, 16);
    md5_final(&h->outer, out);
}

/* Constant-time comparison of two 16-octet digests (as hmac.compare_digest). */
static int digest_equal(const unsigned char *a, const unsigned char *b)
{
    unsigned char diff = 0;
    for (int i = 0; i < 16; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

/* ------------------------------------------------------------------ the codec */

#define HEADER 20
#define MAX_PACKET 4096
#define MA 80
#define MA_LEN 18
#define VSA 26
#define PROXY_STATE 33

static const unsigned char zero16[16];

static PyObject *request_type;  /* radius.packet.Request */
static PyObject *packet_error;  /* radius.packet.PacketError */
/* The slot descriptors of Request's six fields, when bind() was told the class is the
 * plain frozen slots dataclass it is today (no __post_init__, no other field): then a
 * Request is allocated and its slots filled directly, skipping the generated __init__
 * and its six object.__setattr__ calls (about half the decode's time). Else NULL and
 * the class is called. */
#define NFIELDS 6
static PyObject *field_descr[NFIELDS];

static PyObject *new_request(PyObject *const *values)
{
    if (field_descr[0] == NULL)
        return PyObject_Vectorcall(request_type, values, NFIELDS, NULL);
    PyTypeObject *t = (PyTypeObject *)request_type;
    PyObject *obj = t->tp_alloc(t, 0);
    if (obj == NULL)
        return NULL;
    for (int i = 0; i < NFIELDS; i++) {
        if (Py_TYPE(field_descr[i])->tp_descr_set(field_descr[i], obj, values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}
static PyObject *str_code, *str_identifier, *str_authenticator, *str_attrs, *str_get;
static PyObject *proxy_state_key;

/* Raise PacketError(reason, message); always returns NULL. */
static PyObject *packet_fail(const char *reason, PyObject *message)
{
    if (message == NULL)
        return NULL;
    if (packet_error == NULL) {
        Py_DECREF(message);
        PyErr_SetString(PyExc_RuntimeError, "radius._speedups.bind() was not called");
        return NULL;
    }
    PyObject *err = PyObject_CallFunction(packet_error, "sO", reason, message);
    Py_DECREF(message);
    if (err != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(err), err);
        Py_DECREF(err);
    }
    return NULL;
}

#define FAIL(reason, ...) packet_fail((reason), PyUnicode_FromFormat(__VA_ARGS__))

/* Append value to d[key] (a list), creating the list at first sight: packet order. */
static int append_value(PyObject *d, PyObject *key, const unsigned char *p, Py_ssize_t n)
{
    PyObject *value = PyBytes_FromStringAndSize((const char *)p, n);
    if (value == NULL)
        return -1;
    PyObject *values = PyDict_GetItemWithError(d, key);
    int rc;
    if (values != NULL) {
        rc = PyList_Append(values, value);
    } else if (PyErr_Occurred()) {
        rc = -1;
    } else {
        PyObject *list = PyList_New(1);
        if (list == NULL) {
            Py_DECREF(value);
            return -1;
        }
        PyList_SET_ITEM(list, 0, value);
        rc = PyDict_SetItem(d, key, list);
        Py_DECREF(list);
        return rc;
    }
    Py_DECREF(value);
    return rc;
}

/* RFC 2865 §5.26: split a Vendor-Specific value into vsas[(vendor, type)] if it is
 * Vendor-Id then well-formed TLVs. 1: split; 0: not that form (vsas untouched); -1: error. */
static int split_vsa(const unsigned char *v, Py_ssize_t size, PyObject *vsas)
{
    if (size < 6)
        return 0;
    Py_ssize_t pos = 4;
    while (pos < size) {
        if (pos + 2 > size)
            return 0;
        Py_ssize_t end = pos + v[pos + 1];
        if (end < pos + 2 || end > size)
            return 0;
        pos = end;
    }
    unsigned long vendor = ((unsigned long)v[0] << 24) | ((unsigned long)v[1] << 16) |
                           ((unsigned long)v[2] << 8) | (unsigned long)v[3];
    pos = 4;
    while (pos < size) {
        Py_ssize_t end = pos + v[pos + 1];
        PyObject *key = Py_BuildValue("(ki)", vendor, (int)v[pos]);
        if (key == NULL)
            return -1;
        int rc = append_value(vsas, key, v + pos + 2, end - pos - 2);
        Py_DECREF(key);
        if (rc < 0)
            return -1;
        pos = end;
    }
    return 1;
}

/* RFC 3579 §3.2: HMAC-MD5 over the packet with `vector` as authenticator and the
 * Message-Authenticator value zeroed, compared with the value sent. */
static int ma_valid(const unsigned char *p, Py_ssize_t length, Py_ssize_t ma_at,
                    const unsigned char *vector, const unsigned char *secret,
                    Py_ssize_t secret_len)
{
    static const unsigned char ma_zeroed[MA_LEN] = {MA, MA_LEN};
    if (p[ma_at + 1] != MA_LEN)
        return 0;
    hmac_ctx h;
    unsigned char mac[16];
    hmac_init(&h, secret, (size_t)secret_len);
    md5_update(&h.inner, p, 4);
    md5_update(&h.inner, vector, 16);
    md5_update(&h.inner, p + HEADER, (size_t)(ma_at - HEADER));
    md5_update(&h.inner, ma_zeroed, MA_LEN);
    md5_update(&h.inner, p + ma_at + MA_LEN, (size_t)(length - ma_at - MA_LEN));
    hmac_final(&h, mac);
    return digest_equal(mac, p + ma_at + 2);
}

static int is_request_code(int code)
{
    return code == 1 || code == 4 || code == 12 || code == 40 || code == 43;
}

static PyObject *decode_request_impl(PyObject *data, PyObject *secret_obj, int require_ma)
{
    char *pc, *sc;
    Py_ssize_t size, secret_len;
    if (!PyBytes_Check(data) || !PyBytes_Check(secret_obj)) {
        PyErr_SetString(PyExc_TypeError, "decode_request: data and secret must be bytes");
        return NULL;
    }
    if (request_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "radius._speedups.bind() was not called");
        return NULL;
    }
    PyBytes_AsStringAndSize(data, &pc, &size);
    PyBytes_AsStringAndSize(secret_obj, &sc, &secret_len);
    const unsigned char *p = (const unsigned char *)pc;
    const unsigned char *secret = (const unsigned char *)sc;

    if (size < HEADER)
        return FAIL("malformed", "datagram of %zd octets is shorter than a header", size);
    Py_ssize_t length = ((Py_ssize_t)p[2] << 8) | p[3];
    if (length < HEADER || length > MAX_PACKET)
        return FAIL("malformed", "Length field %zd outside 20..4096", length);
    if (length > size)
        return FAIL("malformed", "Length field %zd exceeds datagram of %zd octets", length,
                    size);
    int code = p[0];
    if (!is_request_code(code))
        return FAIL("unexpected_code", "code %d is not a request we serve", code);

    PyObject *attrs = PyDict_New();
    PyObject *vsas = PyDict_New();
    PyObject *result = NULL;
    if (attrs == NULL || vsas == NULL)
        goto done;
    Py_ssize_t ma_at = -1;
    Py_ssize_t pos = HEADER;
    while (pos < length) {
        if (pos + 2 > length) {
            FAIL("malformed", "attribute header at offset %zd overflows the packet", pos);
            goto done;
        }
        int atype = p[pos];
        if (atype == 0) {
            FAIL("invalid_attribute", "attribute type 0 at offset %zd", pos);
            goto done;
        }
        Py_ssize_t end = pos + p[pos + 1];
        if (end < pos + 2 || end > length) {
            FAIL("malformed", "attribute %d at offset %zd has a bad length", atype, pos);
            goto done;
        }
        int split = 0;
        if (atype == VSA) {
            split = split_vsa(p + pos + 2, end - pos - 2, vsas);
            if (split < 0)
                goto done;
        }
        if (!split) {
            if (atype == MA) {
                if (ma_at >= 0) {
                    FAIL("malformed", "more than one Message-Authenticator");
                    goto done;
                }
                ma_at = pos;
            }
            PyObject *key = PyLong_FromLong(atype);
            if (key == NULL)
                goto done;
            int rc = append_value(attrs, key, p + pos + 2, end - pos - 2);
            Py_DECREF(key);
            if (rc < 0)
                goto done;
        }
        pos = end;
    }

    const unsigned char *authenticator = p + 4;
    if (code == 1 || code == 12) {
        if (ma_at >= 0) {
            if (!ma_valid(p, length, ma_at, authenticator, secret, secret_len)) {
                FAIL("bad_message_authenticator", "Message-Authenticator mismatch");
                goto done;
            }
        } else if (code == 12 || require_ma) {
            FAIL("missing_message_authenticator", "no Message-Authenticator");
            goto done;
        } else {
            int has = PyDict_Contains(attrs, proxy_state_key);
            if (has < 0)
                goto done;
            if (has) {
                FAIL("proxy_state_without_message_authenticator",
                     "Proxy-State without Message-Authenticator");
                goto done;
            }
        }
    } else {
        md5_ctx c;
        unsigned char expected[16];
        md5_init(&c);
        md5_update(&c, p, 4);
        md5_update(&c, zero16, 16);
        md5_update(&c, p + HEADER, (size_t)(length - HEADER));
        md5_update(&c, secret, (size_t)secret_len);
        md5_final(&c, expected);
        if (!digest_equal(expected, authenticator)) {
            FAIL("bad_request_authenticator", "Request Authenticator mismatch");
            goto done;
        }
        if (ma_at >= 0 && !ma_valid(p, length, ma_at, zero16, secret, secret_len)) {
            FAIL("bad_message_authenticator", "Message-Authenticator mismatch");
            goto done;
        }
    }

    PyObject *raw;
    if (length == size) {
        raw = data;
        Py_INCREF(raw);
    } else {
        raw = PyBytes_FromStringAndSize(pc, length);
        if (raw == NULL)
            goto done;
    }
    PyObject *ident = PyLong_FromLong(p[1]);
    PyObject *code_obj = PyLong_FromLong(code);
    PyObject *auth = PyBytes_FromStringAndSize((const char *)authenticator, 16);
    if (ident != NULL && code_obj != NULL && auth != NULL) {
        PyObject *args[NFIELDS] = {code_obj, ident, auth, attrs, vsas, raw};
        result = new_request(args);
    }
    Py_XDECREF(ident);
    Py_XDECREF(code_obj);
    Py_XDECREF(auth);
    Py_DECREF(raw);
done:
    Py_XDECREF(attrs);
    Py_XDECREF(vsas);
    return result;
}

static PyObject *sp_decode_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *require = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 2 || nargs + nkw > 3) {
        PyErr_SetString(PyExc_TypeError,
                        "decode_request(data, secret, require_message_authenticator=True)");
        return NULL;
    }
    if (nargs == 3)
        require = args[2];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "require_message_authenticator") != 0) {
            PyErr_Format(PyExc_TypeError, "decode_request: unexpected keyword %R", name);
            return NULL;
        }
        require = args[nargs + i];
    }
    int req = 1;
    if (require != NULL) {
        req = PyObject_IsTrue(require);
        if (req < 0)
            return NULL;
    }
    return decode_request_impl(args[0], args[1], req);
}

/* The codes that answer a request of code `req` (RFC 2865, 2866, 5176, 5997 §3). */
static int answers(int req, long code)
{
    switch (req) {
    case 1: return code == 2 || code == 3 || code == 11;
    case 4: return code == 5;
    case 12: return code == 2 || code == 5;
    case 40: return code == 41 || code == 42;
    case 43: return code == 44 || code == 45;
    default: return 0;
    }
}

static PyObject *sp_encode_reply(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    PyObject *ma_arg = Py_None, *attrs_arg = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_reply(code, request, secret, attrs=b'', *, "
                        "message_authenticator=None)");
        return NULL;
    }
    if (nargs == 4)
        attrs_arg = args[3];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "message_authenticator") == 0) {
            ma_arg = args[nargs + i];
        } else if (nargs == 3 && PyUnicode_CompareWithASCIIString(name, "attrs") == 0) {
            attrs_arg = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "encode_reply: unexpected keyword %R", name);
            return NULL;
        }
    }
    long code = PyLong_AsLong(args[0]);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    PyObject *request = args[1];
    if (!PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "encode_reply: secret must be bytes");
        return NULL;
    }
    const unsigned char *secret = (const unsigned char *)PyBytes_AS_STRING(args[2]);
    Py_ssize_t secret_len = PyBytes_GET_SIZE(args[2]);

    PyObject *req_code_obj = NULL, *ident_obj = NULL, *auth_obj = NULL, *req_attrs = NULL;
    PyObject *proxy_states = NULL, *out = NULL;
    Py_buffer attrs = {0};
    int have_attrs = 0;

    req_code_obj = PyObject_GetAttr(request, str_code);
    if (req_code_obj == NULL)
        goto done;
    long req_code = PyLong_AsLong(req_code_obj);
    if (req_code == -1 && PyErr_Occurred())
        goto done;
    if (!answers((int)req_code, code)) {
        PyErr_Format(PyExc_ValueError, "code %ld does not answer a request of code %ld", code,
                     req_code);
        goto done;
    }
    int with_ma;
    if (ma_arg == Py_None) {
        with_ma = !(code == 5 && req_code == 4);
    } else {
        with_ma = PyObject_IsTrue(ma_arg);
        if (with_ma < 0)
            goto done;
    }
    req_attrs = PyObject_GetAttr(request, str_attrs);
    if (req_attrs == NULL)
        goto done;
    if (PyDict_CheckExact(req_attrs)) {
        proxy_states = PyDict_GetItemWithError(req_attrs, proxy_state_key);
        if (proxy_states == NULL && PyErr_Occurred())
            goto done;
        Py_XINCREF(proxy_states);
    } else {
        proxy_states = PyObject_CallMethodObjArgs(req_attrs, str_get, proxy_state_key, NULL);
        if (proxy_states == NULL)
            goto done;
        if (proxy_states == Py_None)
            Py_CLEAR(proxy_states);
    }
    Py_ssize_t tail_len = 0;
    Py_ssize_t nstates = 0;
    if (proxy_states != NULL) {
        PyObject *fast = PySequence_Fast(proxy_states, "Proxy-State values must be a list");
        if (fast == NULL)
            goto done;
        Py_SETREF(proxy_states, fast);
        nstates = PySequence_Fast_GET_SIZE(proxy_states);
        for (Py_ssize_t i = 0; i < nstates; i++) {
            PyObject *v = PySequence_Fast_GET_ITEM(proxy_states, i);
            if (!PyBytes_Check(v)) {
                PyErr_SetString(PyExc_TypeError, "Proxy-State values must be bytes");
                goto done;
            }
            if (PyBytes_GET_SIZE(v) + 2 > 255) {
                PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
                goto done;
            }
            tail_len += 2 + PyBytes_GET_SIZE(v);
        }
    }
    if (attrs_arg != NULL) {
        if (PyObject_GetBuffer(attrs_arg, &attrs, PyBUF_SIMPLE) < 0)
            goto done;
        have_attrs = 1;
    }
    Py_ssize_t attrs_len = have_attrs ? attrs.len : 0;
    Py_ssize_t length = HEADER + (with_ma ? MA_LEN : 0) + attrs_len + tail_len;
    if (length > MAX_PACKET) {
        PyErr_Format(PyExc_ValueError, "reply of %zd octets exceeds %d", length, MAX_PACKET);
        goto done;
    }
    ident_obj = PyObject_GetAttr(request, str_identifier);
    if (ident_obj == NULL)
        goto done;
    long ident = PyLong_AsLong(ident_obj);
    if (ident == -1 && PyErr_Occurred())
        goto done;
    if (ident < 0 || ident > 255 || code < 0 || code > 255) {
        PyErr_SetString(PyExc_ValueError, "code and identifier must be in 0..255");
        goto done;
    }
    auth_obj = PyObject_GetAttr(request, str_authenticator);
    if (auth_obj == NULL)
        goto done;
    if (!PyBytes_Check(auth_obj)) {
        PyErr_SetString(PyExc_TypeError, "the request's authenticator must be bytes");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, length);
    if (out == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    o[0] = (unsigned char)code;
    o[1] = (unsigned char)ident;
    o[2] = (unsigned char)(length >> 8);
    o[3] = (unsigned char)length;
    unsigned char *body = o + HEADER;
    unsigned char *w = body;
    if (with_ma) {
        w[0] = MA;
        w[1] = MA_LEN;
        memset(w + 2, 0, 16);
        w += MA_LEN;
    }
    if (attrs_len) {
        memcpy(w, attrs.buf, (size_t)attrs_len);
        w += attrs_len;
    }
    for (Py_ssize_t i = 0; i < nstates; i++) {
        PyObject *v = PySequence_Fast_GET_ITEM(proxy_states, i);
        Py_ssize_t n = PyBytes_GET_SIZE(v);
        w[0] = PROXY_STATE;
        w[1] = (unsigned char)(n + 2);
        memcpy(w + 2, PyBytes_AS_STRING(v), (size_t)n);
        w += 2 + n;
    }
    const unsigned char *req_auth = (const unsigned char *)PyBytes_AS_STRING(auth_obj);
    size_t req_auth_len = (size_t)PyBytes_GET_SIZE(auth_obj);
    size_t body_len = (size_t)(length - HEADER);
    if (with_ma) {
        /* RFC 3579 §3.2: over the reply with the Request Authenticator, MA zeroed. */
        hmac_ctx h;
        hmac_init(&h, secret, (size_t)secret_len);
        md5_update(&h.inner, o, 4);
        md5_update(&h.inner, req_auth, req_auth_len);
        md5_update(&h.inner, body, body_len);
        hmac_final(&h, body + 2);
    }
    /* RFC 2865 §3: MD5(Code+ID+Length+RequestAuth+Attributes+Secret). */
    md5_ctx c;
    md5_init(&c);
    md5_update(&c, o, 4);
    md5_update(&c, req_auth, req_auth_len);
    md5_update(&c, body, body_len);
    md5_update(&c, secret, (size_t)secret_len);
    md5_final(&c, o + 4);
done:
    if (have_attrs)
        PyBuffer_Release(&attrs);
    Py_XDECREF(req_code_obj);
    Py_XDECREF(ident_obj);
    Py_XDECREF(auth_obj);
    Py_XDECREF(req_attrs);
    Py_XDECREF(proxy_states);
    return out;
}

static PyObject *sp_bind(PyObject *self, PyObject *args)
{
    PyObject *rt, *pe, *slots = Py_None;
    if (!PyArg_ParseTuple(args, "OO|O:bind", &rt, &pe, &slots))
        return NULL;
    if (!PyCallable_Check(rt) || !PyCallable_Check(pe)) {
        PyErr_SetString(PyExc_TypeError, "bind(request_type, packet_error): two classes");
        return NULL;
    }
    PyObject *descr[NFIELDS] = {NULL};
    if (slots != Py_None) {
        /* the six slot descriptors, in field order: each must be settable */
        PyObject *fast = PySequence_Fast(slots, "bind: slots is a sequence of descriptors");
        if (fast == NULL)
            return NULL;
        if (!PyType_Check(rt) || PySequence_Fast_GET_SIZE(fast) != NFIELDS) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "bind: a class and its six slot descriptors");
            return NULL;
        }
        for (int i = 0; i < NFIELDS; i++) {
            PyObject *d = PySequence_Fast_GET_ITEM(fast, i);
            if (Py_TYPE(d)->tp_descr_set == NULL) {
                Py_DECREF(fast);
                PyErr_SetString(PyExc_TypeError, "bind: a slot descriptor cannot be set");
                return NULL;
            }
            descr[i] = d;
            Py_INCREF(d);
        }
        Py_DECREF(fast);
    }
    for (int i = 0; i < NFIELDS; i++)
        Py_XSETREF(field_descr[i], descr[i]);
    Py_INCREF(rt);
    Py_INCREF(pe);
    Py_XSETREF(request_type, rt);
    Py_XSETREF(packet_error, pe);
    Py_RETURN_NONE;
}

static PyObject *sp_md5(PyObject *self, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    md5_ctx c;
    unsigned char out[16];
    md5_init(&c);
    md5_update(&c, b.buf, (size_t)b.len);
    md5_final(&c, out);
    PyBuffer_Release(&b);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

static PyObject *sp_hmac_md5(PyObject *self, PyObject *args)
{
    Py_buffer k, m;
    if (!PyArg_ParseTuple(args, "y*y*:hmac_md5", &k, &m))
        return NULL;
    hmac_ctx h;
    unsigned char out[16];
    hmac_init(&h, k.buf, (size_t)k.len);
    md5_update(&h.inner, m.buf, (size_t)m.len);
    hmac_final(&h, out);
    PyBuffer_Release(&k);
    PyBuffer_Release(&m);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

/* ------------------------------------------------------------------ recvmmsg/sendmmsg */

#define MAX_BATCH 1024

/* The message arrays of one call (~200 KiB). One is kept between calls; a call made
 * while it is in use (Python code can run inside a call: an allocation may trigger the
 * garbage collector's finalizers, a port's __index__, and another thread may take the
 * GIL then) gets its own. */
typedef struct {
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    struct sockaddr_storage addrs[MAX_BATCH];
    unsigned char *scratch; /* recv_batch's datagram buffers */
    size_t scratch_size;
} workspace;

static workspace kept;
static int kept_in_use;

static workspace *take_workspace(void)
{
    if (!kept_in_use) {
        kept_in_use = 1;
        return &kept;
    }
    workspace *w = PyMem_Calloc(1, sizeof(workspace));
    if (w == NULL)
        PyErr_NoMemory();
    return w;
}

static void give_back(workspace *w)
{
    if (w == &kept) {
        kept_in_use = 0;
        return;
    }
    PyMem_Free(w->scratch);
    PyMem_Free(w);
}

static int ensure_scratch(workspace *w, size_t need)
{
    if (need <= w->scratch_size)
        return 0;
    unsigned char *grown = PyMem_Realloc(w->scratch, need);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->scratch = grown;
    w->scratch_size = need;
    return 0;
}

static PyObject *make_address(const struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        /* as Python's socket module: numeric host (with %scope for link-local) */
        int rc = getnameinfo((const struct sockaddr *)a, sizeof *a, host, sizeof host, NULL, 0,
                             NI_NUMERICHOST);
        if (rc != 0) {
            PyErr_SetString(PyExc_OSError, gai_strerror(rc));
            return NULL;
        }
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    PyErr_Format(PyExc_OSError, "address family %d is not IPv4 or IPv6", ss->ss_family);
    return NULL;
}

static PyObject *sp_recv_batch(PyObject *self, PyObject *args)
{
    int fd, max_count;
    Py_ssize_t bufsize = MAX_PACKET;
    if (!PyArg_ParseTuple(args, "ii|n:recv_batch", &fd, &max_count, &bufsize))
        return NULL;
    if (max_count < 1 || max_count > MAX_BATCH || bufsize < 1 || bufsize > 65536) {
        PyErr_SetString(PyExc_ValueError, "recv_batch: max_count 1..1024, bufsize 1..65536");
        return NULL;
    }
    workspace *w = take_workspace();
    if (w == NULL)
        return NULL;
    PyObject *list = NULL;
    if (ensure_scratch(w, (size_t)max_count * (size_t)bufsize) < 0)
        goto out;
    struct mmsghdr *msgs = w->msgs;
    struct iovec *iov = w->iov;
    struct sockaddr_storage *addrs = w->addrs;
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)max_count);
    for (int i = 0; i < max_count; i++) {
        iov[i].iov_base = w->scratch + (size_t)i * (size_t)bufsize;
        iov[i].iov_len = (size_t)bufsize;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
    }
    int n;
    do {
        n = recvmmsg(fd, msgs, (unsigned int)max_count, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            list = PyList_New(0);
        else
            PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    list = PyList_New(n);
    if (list == NULL)
        goto out;
    for (int i = 0; i < n; i++) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)iov[i].iov_base,
                                                   (Py_ssize_t)msgs[i].msg_len);
        PyObject *addr = data ? make_address(&addrs[i]) : NULL;
        PyObject *item = (data && addr) ? PyTuple_Pack(2, data, addr) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(addr);
        if (item == NULL) {
            Py_CLEAR(list);
            goto out;
        }
        PyList_SET_ITEM(list, i, item);
    }
out:
    give_back(w);
    return list;
}

/* Fill `ss` from a Python address tuple for a socket of `family`; numeric hosts only. */
static int parse_address(PyObject *addr, int family, struct sockaddr_storage *ss,
                         socklen_t *len)
{
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    memset(ss, 0, sizeof *ss);
    if (!PyTuple_Check(addr)) {
        PyErr_SetString(PyExc_TypeError, "send_batch: an address is a tuple");
        return -1;
    }
    if (family == AF_INET) {
        if (!PyArg_ParseTuple(addr, "si:address", &host, &port))
            return -1;
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "send_batch: %s is not a numeric IPv4 address", host);
            return -1;
        }
        if (port < 0 || port > 65535) {
            PyErr_SetString(PyExc_OverflowError, "port must be 0-65535.");
            return -1;
        }
        a->sin_port = htons((uint16_t)port);
        *len = sizeof *a;
        return 0;
    }
    if (family == AF_INET6) {
        if (!PyArg_ParseTuple(addr, "si|II:address", &host, &port, &flowinfo, &scope_id))
            return -1;
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "send_batch: %s is not a numeric IPv6 address", host);
            return -1;
        }
        if (port < 0 || port > 65535) {
            PyErr_SetString(PyExc_OverflowError, "port must be 0-65535.");
            return -1;
        }
        a->sin6_port = htons((uint16_t)port);
        a->sin6_flowinfo = htonl(flowinfo);
        a->sin6_scope_id = scope_id;
        *len = sizeof *a;
        return 0;
    }
    PyErr_Format(PyExc_OSError, "send_batch: socket family %d is not IPv4 or IPv6", family);
    return -1;
}

static PyObject *sp_send_batch(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO:send_batch", &fd, &items))
        return NULL;
    PyObject *seq = PySequence_Fast(items, "send_batch: a list of (bytes, address)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t total = PySequence_Fast_GET_SIZE(seq);
    if (total == 0) {
        Py_DECREF(seq);
        return PyLong_FromLong(0);
    }
    struct sockaddr_storage local;
    socklen_t local_len = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) < 0) {
        Py_DECREF(seq);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    workspace *w = take_workspace();
    if (w == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    struct mmsghdr *msgs = w->msgs;
    struct iovec *iov = w->iov;
    struct sockaddr_storage *addrs = w->addrs;
    PyObject *result = NULL;
    Py_ssize_t sent = 0;
    while (sent < total) {
        int count = (int)((total - sent) > MAX_BATCH ? MAX_BATCH : (total - sent));
        memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)count);
        for (int i = 0; i < count; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(seq, sent + i);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
                !PyBytes_Check(PyTuple_GET_ITEM(item, 0))) {
                PyErr_SetString(PyExc_TypeError, "send_batch: each item is (bytes, address)");
                goto out;
            }
            PyObject *data = PyTuple_GET_ITEM(item, 0);
            socklen_t alen;
            if (parse_address(PyTuple_GET_ITEM(item, 1), local.ss_family, &addrs[i], &alen) <
                0)
                goto out;
            iov[i].iov_base = PyBytes_AS_STRING(data);
            iov[i].iov_len = (size_t)PyBytes_GET_SIZE(data);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = alen;
        }
        int n;
        do {
            n = sendmmsg(fd, msgs, (unsigned int)count, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            /* Nothing of this call went out: a full buffer is "0 more sent"; any other
             * error is raised unless something was already sent (then reported as a
             * partial send, and the caller's next call meets the error again). */
            if (errno == EAGAIN || errno == EWOULDBLOCK || sent > 0)
                break;
            PyErr_SetFromErrno(PyExc_OSError);
            goto out;
        }
        sent += n;
        if (n < count)
            break;
    }
    result = PyLong_FromSsize_t(sent);
out:
    give_back(w);
    Py_DECREF(seq);
    return result;
}

/* ------------------------------------------------------------------ DedupCache */

/* radius/dedup.py's DedupCache (RFC 5080 §2.2.2), the same semantics: entries in the
 * order of their last update (an intrusive doubly-linked list, oldest first), found by
 * key through a dict (so keys hash and compare exactly as the OrderedDict's do), each
 * with its time and its reply (NULL while the request is in progress). Expiry pops from
 * the front while the oldest entry is not newer than now - window; at most max_entries
 * are kept, the oldest going first. Times are C doubles (the Python class keeps what it
 * is given; they differ only for integer times beyond 2**53). */

static PyObject *in_progress;  /* radius.dedup.IN_PROGRESS, from bind_dedup() */

typedef struct entry {
    PyObject_HEAD
    struct entry *prev, *next;  /* the list's links; the dict holds the references */
    PyObject *key;
    PyObject *reply;  /* NULL: in progress */
    double at;
} entry_obj;

static void entry_dealloc(entry_obj *e)
{
    Py_XDECREF(e->key);
    Py_XDECREF(e->reply);
    PyObject_Free(e);
}

static PyTypeObject entry_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "radius._speedups._DedupEntry",
    .tp_basicsize = sizeof(entry_obj),
    .tp_dealloc = (destructor)entry_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

typedef struct {
    PyObject_HEAD
    PyObject *entries;  /* dict: key -> entry */
    entry_obj *head, *tail;  /* oldest, newest */
    double window;
    Py_ssize_t max_entries;
} dedup_obj;

static void unlink_entry(dedup_obj *c, entry_obj *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void append_entry(dedup_obj *c, entry_obj *e)
{
    e->prev = c->tail;
    e->next = NULL;
    if (c->tail)
        c->tail->next = e;
    else
        c->head = e;
    c->tail = e;
}

/* Remove e from the list and the dict. */
static int drop_entry(dedup_obj *c, entry_obj *e)
{
    Py_INCREF(e);
    unlink_entry(c, e);
    int rc = PyDict_DelItem(c->entries, e->key);
    Py_DECREF(e);
    return rc;
}

static int dedup_expire(dedup_obj *c, double now)
{
    double horizon = now - c->window;
    while (c->head != NULL) {
        if (c->head->at > horizon)
            break;
        if (drop_entry(c, c->head) < 0)
            return -1;
    }
    return 0;
}

/* entries[key] = (now, reply) moved to the end, then the oldest beyond max_entries go.
 * reply is borrowed; NULL marks the entry in progress. */
static int dedup_store(dedup_obj *c, PyObject *key, double now, PyObject *reply)
{
    PyObject *found = PyDict_GetItemWithError(c->entries, key);
    if (found == NULL && PyErr_Occurred())
        return -1;
    entry_obj *e;
    if (found != NULL) {
        e = (entry_obj *)found;
        e->at = now;
        Py_XINCREF(reply);
        Py_XSETREF(e->reply, reply);
        if (c->tail != e) {
            unlink_entry(c, e);
            append_entry(c, e);
        }
    } else {
        e = PyObject_New(entry_obj, &entry_type);
        if (e == NULL)
            return -1;
        e->prev = e->next = NULL;
        Py_INCREF(key);
        e->key = key;
        Py_XINCREF(reply);
        e->reply = reply;
        e->at = now;
        int rc = PyDict_SetItem(c->entries, key, (PyObject *)e);
        if (rc < 0) {
            Py_DECREF(e);
            return -1;
        }
        append_entry(c, e);
        Py_DECREF(e);  /* the dict keeps it */
    }
    while (PyDict_GET_SIZE(c->entries) > c->max_entries && c->head != NULL) {
        if (drop_entry(c, c->head) < 0)
            return -1;
    }
    return 0;
}

/* The arguments of a fastcall method, positional or by name, all required. */
static int method_args(const char *sig, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames, const char *const *names, int n, PyObject **out)
{
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s: too many arguments", sig);
        return -1;
    }
    for (int i = 0; i < n; i++)
        out[i] = i < nargs ? args[i] : NULL;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int j = 0;
        while (j < n && PyUnicode_CompareWithASCIIString(name, names[j]) != 0)
            j++;
        if (j == n) {
            PyErr_Format(PyExc_TypeError, "%s: unexpected keyword %R", sig, name);
            return -1;
        }
        if (out[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s: %s given twice", sig, names[j]);
            return -1;
        }
        out[j] = args[nargs + k];
    }
    for (int i = 0; i < n; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s: missing %s", sig, names[i]);
            return -1;
        }
    }
    return 0;
}

static int as_time(PyObject *o, double *t)
{
    *t = PyFloat_AsDouble(o);
    return (*t == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *dedup_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"window", "max_entries", NULL};
    double window;
    Py_ssize_t max_entries = 200000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "d|n:DedupCache", kwlist, &window,
                                     &max_entries))
        return NULL;
    if (window <= 0 || max_entries <= 0) {
        PyErr_SetString(PyExc_ValueError, "window and max_entries must be positive");
        return NULL;
    }
    if (in_progress == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "DedupCache: bind_dedup(IN_PROGRESS) first");
        return NULL;
    }
    dedup_obj *c = (dedup_obj *)type->tp_alloc(type, 0);
    if (c == NULL)
        return NULL;
    c->entries = PyDict_New();
    if (c->entries == NULL) {
        Py_DECREF(c);
        return NULL;
    }
    c->head = c->tail = NULL;
    c->window = window;
    c->max_entries = max_entries;
    return (PyObject *)c;
}

static void dedup_dealloc(dedup_obj *c)
{
    c->head = c->tail = NULL;
    Py_XDECREF(c->entries);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static Py_ssize_t dedup_len(dedup_obj *c)
{
    return PyDict_GET_SIZE(c->entries);
}

static PyObject *dedup_lookup(dedup_obj *c, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"key", "now"};
    PyObject *a[2];
    double now;
    if (method_args("lookup(key, now)", args, nargs, kwnames, names, 2, a) < 0 ||
        as_time(a[1], &now) < 0 || dedup_expire(c, now) < 0)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(c->entries, a[0]);
    if (found == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *reply = ((entry_obj *)found)->reply;
    if (reply == NULL)
        reply = in_progress;
    Py_INCREF(reply);
    return reply;
}

static PyObject *dedup_begin(dedup_obj *c, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"key", "now"};
    PyObject *a[2];
    double now;
    if (method_args("begin(key, now)", args, nargs, kwnames, names, 2, a) < 0 ||
        as_time(a[1], &now) < 0 || dedup_expire(c, now) < 0 ||
        dedup_store(c, a[0], now, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *dedup_finish(dedup_obj *c, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"key", "reply", "now"};
    PyObject *a[3];
    double now;
    if (method_args("finish(key, reply, now)", args, nargs, kwnames, names, 3, a) < 0 ||
        as_time(a[2], &now) < 0 || dedup_expire(c, now) < 0)
        return NULL;
    if (a[1] != Py_None) {
        if (dedup_store(c, a[0], now, a[1]) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *found = PyDict_GetItemWithError(c->entries, a[0]);
    if (found == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if (drop_entry(c, (entry_obj *)found) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef dedup_methods[] = {
    {"lookup", (PyCFunction)(void (*)(void))dedup_lookup, METH_FASTCALL | METH_KEYWORDS,
     "lookup(key, now) -> the reply sent for key within the window, IN_PROGRESS while the\n"
     "original is being processed, else None."},
    {"begin", (PyCFunction)(void (*)(void))dedup_begin, METH_FASTCALL | METH_KEYWORDS,
     "begin(key, now): mark key as being processed."},
    {"finish", (PyCFunction)(void (*)(void))dedup_finish, METH_FASTCALL | METH_KEYWORDS,
     "finish(key, reply, now): cache the reply sent for key; with None forget key."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef dedup_members[] = {
    {"window", T_DOUBLE, offsetof(dedup_obj, window), 0, "seconds an answer is kept"},
    {"max_entries", T_PYSSIZET, offsetof(dedup_obj, max_entries), 0, "entries kept at most"},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods dedup_as_sequence = {
    .sq_length = (lenfunc)dedup_len,
};

static PyTypeObject dedup_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "radius._speedups.DedupCache",
    .tp_basicsize = sizeof(dedup_obj),
    .tp_dealloc = (destructor)dedup_dealloc,
    .tp_as_sequence = &dedup_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "DedupCache(window, max_entries=200000): radius.dedup.DedupCache in C.",
    .tp_methods = dedup_methods,
    .tp_members = dedup_members,
    .tp_new = dedup_new,
};

static PyObject *sp_bind_dedup(PyObject *self, PyObject *sentinel)
{
    Py_INCREF(sentinel);
    Py_XSETREF(in_progress, sentinel);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ RESP packing */

/* controller/storage/redis_batch.py's pack(): every command a RESP array of bulk
 * strings, all in one buffer, the octets hiredis.pack_command gives each: bytes (and
 * subclasses) as they are, str (and subclasses) UTF-8, a memoryview's buffer, an exact
 * int or any float as its repr(); anything else is a TypeError. */

typedef struct {
    PyObject *bytes;  /* the result being filled; resized as it grows */
    Py_ssize_t used;
} outbuf;

static int out_reserve(outbuf *o, Py_ssize_t more)
{
    Py_ssize_t cap = PyBytes_GET_SIZE(o->bytes);
    if (o->used + more <= cap)
        return 0;
    Py_ssize_t want = cap * 2;
    if (want < o->used + more)
        want = o->used + more;
    return _PyBytes_Resize(&o->bytes, want);
}

static int out_write(outbuf *o, const char *p, Py_ssize_t n)
{
    if (out_reserve(o, n) < 0)
        return -1;
    memcpy(PyBytes_AS_STRING(o->bytes) + o->used, p, (size_t)n);
    o->used += n;
    return 0;
}

/* lead ('*' or '$'), the decimal of n, CRLF */
static int out_header(outbuf *o, char lead, long long n)
{
    char tmp[32];
    char *end = tmp + sizeof(tmp), *p = end;
    *--p = '\n';
    *--p = '\r';
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0)
        *--p = '-';
    *--p = lead;
    return out_write(o, p, end - p);
}

static int out_bulk(outbuf *o, const char *p, Py_ssize_t n)
{
    if (out_header(o, '$', n) < 0 || out_reserve(o, n + 2) < 0)
        return -1;
    char *at = PyBytes_AS_STRING(o->bytes) + o->used;
    memcpy(at, p, (size_t)n);
    at[n] = '\r';
    at[n + 1] = '\n';
    o->used += n + 2;
    return 0;
}

static int out_argument(outbuf *o, PyObject *item)
{
    if (PyBytes_Check(item))
        return out_bulk(o, PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item));
    if (PyUnicode_Check(item)) {
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(item, &n);
        return p == NULL ? -1 : out_bulk(o, p, n);
    }
    if (PyMemoryView_Check(item)) {
        Py_buffer *view = PyMemoryView_GET_BUFFER(item);
        return out_bulk(o, view->buf, view->len);
    }
    if (PyLong_CheckExact(item)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (!overflow) {
            if (v == -1 && PyErr_Occurred())
                return -1;
            char tmp[24];
            char *end = tmp + sizeof(tmp), *p = end;
            unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
            do {
                *--p = (char)('0' + u % 10);
                u /= 10;
            } while (u);
            if (v < 0)
                *--p = '-';
            return out_bulk(o, p, end - p);
        }
    } else if (!PyFloat_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "A tuple item must be str, int, float or bytes.");
        return -1;
    }
    PyObject *repr = PyObject_Repr(item);  /* a big int, or a float */
    if (repr == NULL)
        return -1;
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(repr, &n);
    int rc = p == NULL ? -1 : out_bulk(o, p, n);
    Py_DECREF(repr);
    return rc;
}

static PyObject *sp_pack_commands(PyObject *self, PyObject *commands)
{
    PyObject *seq = PySequence_Fast(commands, "pack_commands: an iterable of commands");
    if (seq == NULL)
        return NULL;
    outbuf o = {PyBytes_FromStringAndSize(NULL, 256), 0};
    if (o.bytes == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *command = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, i),
                                            "pack_commands: a command is an iterable");
        if (command == NULL)
            goto fail;
        Py_ssize_t argc = PySequence_Fast_GET_SIZE(command);
        int rc = out_header(&o, '*', argc);
        for (Py_ssize_t j = 0; rc == 0 && j < argc; j++)
            rc = out_argument(&o, PySequence_Fast_GET_ITEM(command, j));
        Py_DECREF(command);
        if (rc < 0)
            goto fail;
    }
    Py_DECREF(seq);
    if (_PyBytes_Resize(&o.bytes, o.used) < 0)
        return NULL;
    return o.bytes;
fail:
    Py_DECREF(seq);
    Py_XDECREF(o.bytes);
    return NULL;
}

/* ------------------------------------------------------------------ Counters */

/* The RADIUS shell's per-answer counting (issue 16 item 4), kept in plain C arrays:
 * radius/server.py calls sent() once per answer, dropped() once per drop and at_once()
 * per Status-Server or duplicate answered by the core. Each is an increment or two and
 * no Python object; what was counted is read when somebody looks: take_metrics() at a
 * /metrics scrape (radius/metrics.py folds it into the prometheus_client objects, which
 * stay the one rendering of the families) and take_tally() at NasStats' once-a-second
 * flush (radius/tally.py folds it into the Tally). Each take hands out what was counted
 * since the previous take of the same kind and starts that kind again from zero, so the
 * two readers never see each other's deltas. radius.metrics' pure-Python path (the
 * prometheus objects and radius.tally.Tally called per answer) is the reference model;
 * tests/test_hot_counters.py holds the two against each other.
 *
 * Clients (str, or None for a drop from no known source) and reasons (str) get a slot
 * the first time they are seen (found again through a dict: one hash lookup of a str
 * whose hash is cached) and keep it: both sets are bounded (configured clients; the
 * codes, outcomes and drop reasons of radius.core). A take reads a cell into locals and
 * zeroes it before it builds any Python object, and re-finds its slot by index after,
 * so an increment that happens while the take allocates (a GC pass running Python code)
 * is kept for the next take, never lost. Roles are 0 (auth) and 1 (acct); reply codes
 * are Access-Accept, -Reject, -Challenge and Accounting-Response: sent() returns False
 * for any other code, without counting it, and the caller counts it the Python way. */

#define CT_ROLES 2
#define CT_CODES 4
#define CT_MAX_BUCKETS 64
static const int ct_code_of[CT_CODES] = {2, 3, 11, 5};

static int ct_code_index(long code)
{
    switch (code) {
    case 2: return 0;
    case 3: return 1;
    case 11: return 2;
    case 5: return 3;
    default: return -1;
    }
}

typedef struct {
    uint64_t *n;  /* counts by reason slot */
    Py_ssize_t size;
} ct_row;

typedef struct {
    PyObject *client;  /* str or None; a strong reference */
    uint64_t m_answers[CT_ROLES][CT_CODES];  /* since take_metrics */
    uint64_t t_answers[CT_ROLES][CT_CODES];  /* since take_tally */
    ct_row t_rejects;  /* Access-Rejects by reason, since take_tally */
    ct_row t_drops;  /* drops by reason, since take_tally */
    int heard;  /* a request was seen from it since take_tally */
    char made[CT_ROLES][CT_CODES];  /* the cell is in answer_order */
} ct_client;

typedef struct {
    PyObject_HEAD
    PyObject *client_slots;  /* dict: client -> int */
    ct_client *clients;
    Py_ssize_t nclients, capacity;
    /* the answer cells (client slot * 8 + role * 4 + code index) in the order they
     * were first counted: take_metrics hands them out in that order, so the prometheus
     * children are made in the order the Python way makes them (the scrape's order) */
    Py_ssize_t *answer_order;
    Py_ssize_t norder, order_capacity;
    PyObject *reason_slots;  /* dict: reason -> int */
    PyObject *reasons;  /* list: slot -> reason */
    ct_row m_drops[CT_ROLES];  /* by reason, since take_metrics */
    uint64_t m_status[CT_ROLES], m_duplicate[CT_ROLES];
    double bounds[CT_MAX_BUCKETS];  /* the histogram's upper bounds, +Inf last */
    int nbounds;
    uint64_t m_buckets[CT_ROLES][CT_MAX_BUCKETS];  /* not cumulative, as prometheus keeps them */
    double m_sum[CT_ROLES];
} counters_obj;

static void ct_row_free(ct_row *r)
{
    PyMem_Free(r->n);
    r->n = NULL;
    r->size = 0;
}

static int ct_bump(ct_row *r, Py_ssize_t i)
{
    if (i >= r->size) {
        Py_ssize_t size = r->size ? r->size : 8;
        while (size <= i)
            size *= 2;
        uint64_t *n = PyMem_Realloc(r->n, (size_t)size * sizeof(uint64_t));
        if (n == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memset(n + r->size, 0, (size_t)(size - r->size) * sizeof(uint64_t));
        r->n = n;
        r->size = size;
    }
    r->n[i] += 1;
    return 0;
}

/* The slot of ``client`` (a str or None), made on first sight; -1 with an exception. */
static Py_ssize_t ct_client_slot(counters_obj *c, PyObject *client)
{
    PyObject *found = PyDict_GetItemWithError(c->client_slots, client);
    if (found != NULL)
        return PyLong_AsSsize_t(found);
    if (PyErr_Occurred())
        return -1;
    if (client != Py_None && !PyUnicode_CheckExact(client)) {
        PyErr_Format(PyExc_TypeError, "Counters: a client is a str or None, not %.100s",
                     Py_TYPE(client)->tp_name);
        return -1;
    }
    if (c->nclients == c->capacity) {
        Py_ssize_t capacity = c->capacity ? 2 * c->capacity : 16;
        ct_client *grown = PyMem_Realloc(c->clients, (size_t)capacity * sizeof(ct_client));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->clients = grown;
        c->capacity = capacity;
    }
    Py_ssize_t slot = c->nclients;
    PyObject *number = PyLong_FromSsize_t(slot);
    if (number == NULL)
        return -1;
    int failed = PyDict_SetItem(c->client_slots, client, number);
    Py_DECREF(number);
    if (failed < 0)
        return -1;
    ct_client *k = &c->clients[slot];
    memset(k, 0, sizeof(*k));
    Py_INCREF(client);
    k->client = client;
    c->nclients = slot + 1;
    return slot;
}

/* The slot of ``reason`` (a str), made on first sight; -1 with an exception. */
static Py_ssize_t ct_reason_slot(counters_obj *c, PyObject *reason)
{
    PyObject *found = PyDict_GetItemWithError(c->reason_slots, reason);
    if (found != NULL)
        return PyLong_AsSsize_t(found);
    if (PyErr_Occurred())
        return -1;
    if (!PyUnicode_CheckExact(reason)) {
        PyErr_Format(PyExc_TypeError, "Counters: a reason is a str, not %.100s",
                     Py_TYPE(reason)->tp_name);
        return -1;
    }
    Py_ssize_t slot = PyList_GET_SIZE(c->reasons);
    PyObject *number = PyLong_FromSsize_t(slot);
    if (number == NULL)
        return -1;
    if (PyList_Append(c->reasons, reason) < 0) {
        Py_DECREF(number);
        return -1;
    }
    int failed = PyDict_SetItem(c->reason_slots, reason, number);
    Py_DECREF(number);
    if (failed < 0) {
        PyList_SetSlice(c->reasons, slot, slot + 1, NULL);
        return -1;
    }
    return slot;
}

static int ct_role(PyObject *o)
{
    long role = PyLong_AsLong(o);
    if (role == -1 && PyErr_Occurred())
        return -1;
    if (role < 0 || role >= CT_ROLES) {
        PyErr_Format(PyExc_ValueError, "Counters: role %ld is not 0 (auth) or 1 (acct)", role);
        return -1;
    }
    return (int)role;
}

static PyObject *counters_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"bounds", NULL};
    PyObject *bounds;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Counters", kwlist, &bounds))
        return NULL;
    PyObject *seq = PySequence_Fast(bounds, "Counters: bounds must be a sequence of floats");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    double b[CT_MAX_BUCKETS];
    if (n < 1 || n > CT_MAX_BUCKETS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "Counters: 1 to %d bounds, not %zd", CT_MAX_BUCKETS, n);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        b[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (b[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        if (i > 0 && !(b[i] > b[i - 1])) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "Counters: bounds must increase");
            return NULL;
        }
    }
    Py_DECREF(seq);
    counters_obj *c = (counters_obj *)type->tp_alloc(type, 0);  /* zeroed */
    if (c == NULL)
        return NULL;
    c->client_slots = PyDict_New();
    c->reason_slots = PyDict_New();
    c->reasons = PyList_New(0);
    if (c->client_slots == NULL || c->reason_slots == NULL || c->reasons == NULL) {
        Py_DECREF(c);
        return NULL;
    }
    memcpy(c->bounds, b, (size_t)n * sizeof(double));
    c->nbounds = (int)n;
    return (PyObject *)c;
}

static void counters_dealloc(counters_obj *c)
{
    for (Py_ssize_t i = 0; i < c->nclients; i++) {
        Py_XDECREF(c->clients[i].client);
        ct_row_free(&c->clients[i].t_rejects);
        ct_row_free(&c->clients[i].t_drops);
    }
    PyMem_Free(c->clients);
    PyMem_Free(c->answer_order);
    for (int r = 0; r < CT_ROLES; r++)
        ct_row_free(&c->m_drops[r]);
    Py_XDECREF(c->client_slots);
    Py_XDECREF(c->reason_slots);
    Py_XDECREF(c->reasons);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int ct_nargs(const char *sig, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s takes %zd positional arguments, %zd given", sig, want,
                 nargs);
    return -1;
}

/* sent(role, client, code, reason, latency): everything is checked before anything is
 * counted, so a call counts all of its increments or none. */
static PyObject *counters_sent(counters_obj *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (ct_nargs("sent(role, client, code, reason, latency)", nargs, 5) < 0)
        return NULL;
    int role = ct_role(args[0]);
    if (role < 0)
        return NULL;
    long code = PyLong_AsLong(args[2]);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    if (!PyUnicode_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "Counters.sent: reason must be a str");
        return NULL;
    }
    double latency = PyFloat_AsDouble(args[4]);
    if (latency == -1.0 && PyErr_Occurred())
        return NULL;
    int k = ct_code_index(code);
    if (k < 0)
        Py_RETURN_FALSE;
    if (args[1] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "Counters.sent: an answer goes to a client, not None");
        return NULL;
    }
    Py_ssize_t slot = ct_client_slot(c, args[1]);
    if (slot < 0)
        return NULL;
    if (code == 3 && PyUnicode_GET_LENGTH(args[3]) > 0) {
        Py_ssize_t why = ct_reason_slot(c, args[3]);
        if (why < 0 || ct_bump(&c->clients[slot].t_rejects, why) < 0)
            return NULL;
    }
    if (!c->clients[slot].made[role][k]) {
        if (c->norder == c->order_capacity) {
            Py_ssize_t capacity = c->order_capacity ? 2 * c->order_capacity : 64;
            Py_ssize_t *grown =
                PyMem_Realloc(c->answer_order, (size_t)capacity * sizeof(Py_ssize_t));
            if (grown == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            c->answer_order = grown;
            c->order_capacity = capacity;
        }
        c->answer_order[c->norder++] = slot * CT_ROLES * CT_CODES + role * CT_CODES + k;
        c->clients[slot].made[role][k] = 1;
    }
    ct_client *client = &c->clients[slot];
    client->m_answers[role][k] += 1;
    client->t_answers[role][k] += 1;
    client->heard = 1;
    for (int i = 0; i < c->nbounds; i++) {  /* a NaN is in no bucket, as in prometheus_client */
        if (latency <= c->bounds[i]) {
            c->m_buckets[role][i] += 1;
            break;
        }
    }
    c->m_sum[role] += latency;
    Py_RETURN_TRUE;
}

/* dropped(role, client, reason): a packet dropped without an answer. */
static PyObject *counters_dropped(counters_obj *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (ct_nargs("dropped(role, client, reason)", nargs, 3) < 0)
        return NULL;
    int role = ct_role(args[0]);
    if (role < 0)
        return NULL;
    Py_ssize_t why = ct_reason_slot(c, args[2]);
    if (why < 0)
        return NULL;
    Py_ssize_t slot = ct_client_slot(c, args[1]);
    if (slot < 0)
        return NULL;
    /* grow both rows before counting in either, so a failure counts nothing */
    if (ct_bump(&c->m_drops[role], why) < 0)
        return NULL;
    if (ct_bump(&c->clients[slot].t_drops, why) < 0) {
        c->m_drops[role].n[why] -= 1;
        return NULL;
    }
    if (args[1] != Py_None)
        c->clients[slot].heard = 1;
    Py_RETURN_NONE;
}

/* at_once(role, status, client): the core answered at once, a Status-Server (status
 * true: its client, when known, is heard) or a duplicate's cached answer. */
static PyObject *counters_at_once(counters_obj *c, PyObject *const *args, Py_ssize_t nargs)
{
    if (ct_nargs("at_once(role, status, client)", nargs, 3) < 0)
        return NULL;
    int role = ct_role(args[0]);
    if (role < 0)
        return NULL;
    int status = PyObject_IsTrue(args[1]);
    if (status < 0)
        return NULL;
    if (status && args[2] != Py_None) {
        Py_ssize_t slot = ct_client_slot(c, args[2]);
        if (slot < 0)
            return NULL;
        c->clients[slot].heard = 1;
    }
    if (status)
        c->m_status[role] += 1;
    else
        c->m_duplicate[role] += 1;
    Py_RETURN_NONE;
}

/* Append Py_BuildValue(fmt, ...) to list; -1 on failure. */
static int ct_append(PyObject *list, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *item = Py_VaBuildValue(fmt, va);
    va_end(va);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed;
}

/* A take that fails (MemoryError only) gives back the cell it was at; the cells it had
 * already moved into its lists go with them, uncounted: a loss only when out of memory. */
#define CT_TAKE_FAIL(cell, n) do { (cell) += (n); goto fail; } while (0)

static PyObject *counters_take_metrics(counters_obj *c, PyObject *Py_UNUSED(ignored))
{
    PyObject *answers = PyList_New(0), *drops = PyList_New(0), *at_once = PyList_New(0);
    PyObject *latency = PyList_New(0), *bucket = NULL;
    if (!answers || !drops || !at_once || !latency)
        goto fail;
    for (Py_ssize_t o = 0; o < c->norder; o++) {
        Py_ssize_t cell = c->answer_order[o], i = cell / (CT_ROLES * CT_CODES);
        int r = (int)(cell / CT_CODES % CT_ROLES), k = (int)(cell % CT_CODES);
        uint64_t n = c->clients[i].m_answers[r][k];
        if (n == 0)
            continue;
        c->clients[i].m_answers[r][k] = 0;
        if (ct_append(answers, "(iOiK)", r, c->clients[i].client, ct_code_of[k],
                      (unsigned long long)n) < 0)
            CT_TAKE_FAIL(c->clients[i].m_answers[r][k], n);
    }
    for (int r = 0; r < CT_ROLES; r++) {
        for (Py_ssize_t j = 0; j < c->m_drops[r].size; j++) {
            uint64_t n = c->m_drops[r].n[j];
            if (n == 0)
                continue;
            c->m_drops[r].n[j] = 0;
            if (ct_append(drops, "(iOK)", r, PyList_GET_ITEM(c->reasons, j),
                          (unsigned long long)n) < 0)
                CT_TAKE_FAIL(c->m_drops[r].n[j], n);
        }
        uint64_t status = c->m_status[r], duplicate = c->m_duplicate[r];
        if (status || duplicate) {
            c->m_status[r] = c->m_duplicate[r] = 0;
            if (ct_append(at_once, "(iKK)", r, (unsigned long long)status,
                          (unsigned long long)duplicate) < 0) {
                c->m_status[r] += status;
                CT_TAKE_FAIL(c->m_duplicate[r], duplicate);
            }
        }
        uint64_t counts[CT_MAX_BUCKETS], any = 0;
        int nb = c->nbounds;
        for (int b = 0; b < nb; b++) {
            counts[b] = c->m_buckets[r][b];
            any |= counts[b];
        }
        double sum = c->m_sum[r];
        if (!any && sum == 0.0)
            continue;
        memset(c->m_buckets[r], 0, sizeof(c->m_buckets[r]));
        c->m_sum[r] = 0.0;
        bucket = PyTuple_New(nb);
        int failed = bucket == NULL;
        for (int b = 0; !failed && b < nb; b++) {
            PyObject *v = PyLong_FromUnsignedLongLong(counts[b]);
            failed = v == NULL;
            if (v)
                PyTuple_SET_ITEM(bucket, b, v);
        }
        if (failed || ct_append(latency, "(iOd)", r, bucket, sum) < 0) {
            for (int b = 0; b < nb; b++)
                c->m_buckets[r][b] += counts[b];
            c->m_sum[r] += sum;
            goto fail;
        }
        Py_CLEAR(bucket);
    }
    return Py_BuildValue("(NNNN)", answers, drops, at_once, latency);
fail:
    Py_XDECREF(bucket);
    Py_XDECREF(answers);
    Py_XDECREF(drops);
    Py_XDECREF(at_once);
    Py_XDECREF(latency);
    return NULL;
}

static PyObject *counters_take_tally(counters_obj *c, PyObject *Py_UNUSED(ignored))
{
    PyObject *answers = PyList_New(0), *rejects = PyList_New(0), *drops = PyList_New(0);
    PyObject *heard = PyList_New(0);
    if (!answers || !rejects || !drops || !heard)
        goto fail;
    for (Py_ssize_t i = 0; i < c->nclients; i++) {
        for (int r = 0; r < CT_ROLES; r++) {
            for (int k = 0; k < CT_CODES; k++) {
                uint64_t n = c->clients[i].t_answers[r][k];
                if (n == 0)
                    continue;
                c->clients[i].t_answers[r][k] = 0;
                if (ct_append(answers, "(OiiK)", c->clients[i].client, r, ct_code_of[k],
                              (unsigned long long)n) < 0)
                    CT_TAKE_FAIL(c->clients[i].t_answers[r][k], n);
            }
        }
        for (int which = 0; which < 2; which++) {
            PyObject *into = which ? drops : rejects;
            for (Py_ssize_t j = 0;; j++) {
                ct_row *row = which ? &c->clients[i].t_drops : &c->clients[i].t_rejects;
                if (j >= row->size)
                    break;
                uint64_t n = row->n[j];
                if (n == 0)
                    continue;
                row->n[j] = 0;
                if (ct_append(into, "(OOK)", c->clients[i].client,
                              PyList_GET_ITEM(c->reasons, j), (unsigned long long)n) < 0) {
                    row = which ? &c->clients[i].t_drops : &c->clients[i].t_rejects;
                    CT_TAKE_FAIL(row->n[j], n);
                }
            }
        }
        if (c->clients[i].heard) {
            c->clients[i].heard = 0;
            if (PyList_Append(heard, c->clients[i].client) < 0) {
                c->clients[i].heard = 1;
                goto fail;
            }
        }
    }
    return Py_BuildValue("(NNNN)", answers, rejects, drops, heard);
fail:
    Py_XDECREF(answers);
    Py_XDECREF(rejects);
    Py_XDECREF(drops);
    Py_XDECREF(heard);
    return NULL;
}

static PyMethodDef counters_methods[] = {
    {"sent", (PyCFunction)(void (*)(void))counters_sent, METH_FASTCALL,
     "sent(role, client, code, reason, latency) -> bool\n"
     "An answer of code to client: its request counters, the reject reason (code 3 and a\n"
     "reason), client heard, latency observed. False, counting nothing, for a code other\n"
     "than 2, 3, 11, 5."},
    {"dropped", (PyCFunction)(void (*)(void))counters_dropped, METH_FASTCALL,
     "dropped(role, client, reason): a packet dropped (client None: no known source)."},
    {"at_once", (PyCFunction)(void (*)(void))counters_at_once, METH_FASTCALL,
     "at_once(role, status, client): a Status-Server (status true) or a duplicate\n"
     "answered by the core."},
    {"take_metrics", (PyCFunction)counters_take_metrics, METH_NOARGS,
     "take_metrics() -> (answers, drops, at_once, latency), counted since the last call:\n"
     "[(role, client, code, n)], [(role, reason, n)], [(role, status_n, duplicate_n)],\n"
     "[(role, counts by bucket, sum)]."},
    {"take_tally", (PyCFunction)counters_take_tally, METH_NOARGS,
     "take_tally() -> (answers, rejects, drops, heard), counted since the last call:\n"
     "[(client, role, code, n)], [(client, reason, n)], [(client, reason, n)], [client]."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject counters_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "radius._speedups.Counters",
    .tp_basicsize = sizeof(counters_obj),
    .tp_dealloc = (destructor)counters_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Counters(bounds): the RADIUS shell's per-answer counters in C, read by\n"
              "take_metrics() and take_tally() (see radius/metrics.py).",
    .tp_methods = counters_methods,
    .tp_new = counters_new,
};

/* ------------------------------------------------------------------ RESP replies */

/* controller/storage/redis_batch.py's ReplyRouter (hiredis.Reader plus the routing loop,
 * the reference) in C: the Redis link's replies parsed and handed straight to the units
 * waiting for them, in the order they were written, from data_received, without a Task.
 *
 *   ReplyRouter(reply_error, protocol_error)
 *   push(count, future)  a unit waiting for its next `count` replies (count >= 1)
 *   feed(data)           parse every complete reply while units wait; each unit's future
 *                        gets the list of its replies (futures already done are skipped)
 *   gets()               one reply or False (the hiredis.Reader interface, for the tests)
 *   take()               the waiting units' futures, removed (the link fails them)
 *   answered, len()      units completed so far, units waiting
 *
 * The values are hiredis.Reader(replyError=reply_error)'s for RESP2 (the link never sends
 * HELLO, so Redis answers RESP2): bytes for simple and bulk strings, int, None for nil,
 * lists, reply_error(message decoded as UTF-8 with "replace") for error replies. The
 * checks and messages are hiredis's (read.c: string2ll, "Bad integer value", the
 * 2**32 - 1 elements and 1024 levels limits...); a RESP3 type byte is refused like an
 * unknown one. A protocol error is sticky: every later feed/gets raises it again.
 * A reply is first scanned (no objects made), then built from the octets known to be
 * complete. The scan resumes where the last chunk ran out: the offset of the first item
 * not yet seen whole and, per open array, the items it still owes. So a reply of N octets
 * cut into chunks is examined O(N) times in all, not once per chunk from its start
 * (a 2,000-entry XREADGROUP reply of 733 KB in 64 KiB chunks cost twice as much as
 * whole before). `examined` counts the octets the scanner looked at, for the tests. */

#define RESP_MAX_ELEMENTS ((1LL << 32) - 1)
#define RESP_MAX_DEPTH 1024

typedef struct {
    PyObject_HEAD
    PyObject *reply_error, *protocol_error;
    char *buf;  /* octets received and not yet parsed: buf[pos:len] */
    Py_ssize_t pos, len, cap;
    PyObject **futures;  /* the waiting units, a ring: [head, head + size) mod qcap */
    Py_ssize_t *counts;
    Py_ssize_t head, size, qcap;
    PyObject *got;  /* the head unit's replies so far (NULL before its first) */
    Py_ssize_t answered;
    PyObject *error;  /* the protocol error's message once the stream went wrong */
    int busy;
    /* the scan of the incomplete reply at buf[pos:], kept between chunks */
    Py_ssize_t scan_at;  /* offset from pos of the first item not yet scanned whole */
    int scan_depth;      /* arrays open around it */
    long long scan_left[RESP_MAX_DEPTH];  /* items each open array still owes */
    Py_ssize_t examined;  /* octets the scanner looked at (diagnostic) */
} router_obj;

static PyObject *str_done, *str_set_result;

/* hiredis's string2ll (read.c): an optional '-', no leading zeros, no '+', no overflow */
static int resp_ll(const char *p, Py_ssize_t n, long long *out)
{
    if (n == 0)
        return -1;
    if (n == 1 && p[0] == '0') {
        *out = 0;
        return 0;
    }
    int negative = p[0] == '-';
    Py_ssize_t i = negative;
    if (i == n || p[i] < '1' || p[i] > '9')
        return -1;
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v > ULLONG_MAX / 10)
            return -1;
        v *= 10;
        if (v > ULLONG_MAX - (unsigned long long)(p[i] - '0'))
            return -1;
        v += (unsigned long long)(p[i] - '0');
    }
    if (negative) {
        if (v > (unsigned long long)LLONG_MAX + 1)
            return -1;
        *out = (long long)(0ULL - v);
    } else {
        if (v > (unsigned long long)LLONG_MAX)
            return -1;
        *out = (long long)v;
    }
    return 0;
}

/* the offset of the first "\r\n" in p[0:n], or -1 */
static Py_ssize_t resp_line(const char *p, Py_ssize_t n)
{
    const char *at = p, *end = p + n;
    while (end - at >= 2) {
        const char *cr = memchr(at, '\r', (size_t)(end - at - 1));
        if (cr == NULL)
            return -1;
        if (cr[1] == '\n')
            return cr - p;
        at = cr + 1;
    }
    return -1;
}

typedef struct {
    const char *message;
    char byte;  /* for the type byte message */
} resp_error;

/* The length of the complete reply at p[0:n]; 0 when it is not complete yet (the
 * router's scan state then says where to go on); -1 on a protocol error (err filled).
 * Checks in hiredis's order, item by item, so an error is found as soon as hiredis finds
 * it, however the octets are chunked. Iterative: the open arrays are r->scan_left. */
static Py_ssize_t resp_scan(router_obj *r, const char *p, Py_ssize_t n, resp_error *err)
{
    Py_ssize_t at = r->scan_at;
    int depth = r->scan_depth;
    for (;;) {
        if (at >= n)
            break;
        char type = p[at];
        if (type == '*' && depth >= RESP_MAX_DEPTH) {
            err->message = "Max nesting depth exceeded";
            return -1;
        }
        if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*') {
            err->message = NULL;
            err->byte = type;
            return -1;
        }
        Py_ssize_t line = resp_line(p + at + 1, n - at - 1);
        r->examined += line < 0 ? n - at : line + 3;
        if (line < 0)
            break;
        const char *text = p + at + 1;
        Py_ssize_t head = 1 + line + 2;
        long long v;
        switch (type) {
        case '+':
        case '-':
            for (Py_ssize_t i = 0; i < line; i++)
                if (text[i] == '\r' || text[i] == '\n') {
                    err->message = "Bad simple string value";
                    return -1;
                }
            break;
        case ':':
            if (resp_ll(text, line, &v) < 0) {
                err->message = "Bad integer value";
                return -1;
            }
            break;
        case '$':
            if (resp_ll(text, line, &v) < 0) {
                err->message = "Bad bulk string length";
                return -1;
            }
            if (v < -1) {
                err->message = "Bulk string length out of range";
                return -1;
            }
            if (v >= 0) {
                if (v > (long long)(n - at - head) - 2)
                    goto incomplete;  /* the header is read again with the data */
                head += (Py_ssize_t)v + 2;  /* the CRLF after the data is skipped unread */
            }
            break;
        default:  /* '*' */
            if (resp_ll(text, line, &v) < 0) {
                err->message = "Bad multi-bulk length";
                return -1;
            }
            if (v < -1 || v > RESP_MAX_ELEMENTS) {
                err->message = "Multi-bulk length out of range";
                return -1;
            }
            if (v > 0) {  /* its items come next */
                r->scan_left[depth++] = v;
                at += head;
                continue;
            }
        }
        at += head;  /* one item whole: close the arrays it completes */
        for (;;) {
            if (depth == 0) {
                r->scan_at = 0;
                r->scan_depth = 0;
                return at;
            }
            if (--r->scan_left[depth - 1] > 0)
                break;
            depth--;
        }
    }
incomplete:
    r->scan_at = at;
    r->scan_depth = depth;
    return 0;
}

/* Short words recur in every reply: the field names of a session record (HGETALL) and
 * of a stream entry, the status words of the scripts ("ok", "login", "accept"...). An
 * archiver round reads ~550,000 of them for 50,000 records; each made anew is an
 * allocation and a free. So a bulk string of 1 to 16 octets that starts with a lowercase
 * letter (what names and words look like; ids, numbers, MACs and phone numbers do not)
 * comes from a small direct-mapped cache of bytes objects when one holds the same
 * octets. Bytes are immutable, so sharing one object changes no value; a miss just
 * replaces the slot. The cache holds at most WORDS_SLOTS * 16 octets for the module's
 * life. */
#define WORDS_SLOTS 512
static PyObject *words[WORDS_SLOTS];

static PyObject *resp_bytes(const char *p, Py_ssize_t n)
{
    if (n < 1 || n > 16 || p[0] < 'a' || p[0] > 'z')
        return PyBytes_FromStringAndSize(p, n);
    uint32_t h = 2166136261u ^ (uint32_t)n;  /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    PyObject **slot = &words[(h ^ (h >> 16)) % WORDS_SLOTS];
    PyObject *word = *slot;
    if (word != NULL && PyBytes_GET_SIZE(word) == n &&
        memcmp(PyBytes_AS_STRING(word), p, (size_t)n) == 0)
        return Py_NewRef(word);
    word = PyBytes_FromStringAndSize(p, n);
    if (word != NULL)
        Py_XSETREF(*slot, Py_NewRef(word));
    return word;
}

/* The value of the reply resp_scan found complete at p (new reference, NULL on error) */
static PyObject *resp_build(router_obj *r, const char *p, Py_ssize_t n, Py_ssize_t *used)
{
    Py_ssize_t line = resp_line(p + 1, n - 1);  /* resp_scan found it */
    const char *text = p + 1;
    Py_ssize_t head = 1 + line + 2;
    long long v = 0;
    *used = head;
    switch (p[0]) {
    case '+':
        return PyBytes_FromStringAndSize(text, line);
    case '-': {
        PyObject *message = PyUnicode_DecodeUTF8(text, line, "replace");
        if (message == NULL)
            return NULL;
        PyObject *error = PyObject_CallOneArg(r->reply_error, message);
        Py_DECREF(message);
        return error;
    }
    case ':':
        resp_ll(text, line, &v);
        return PyLong_FromLongLong(v);
    case '$':
        resp_ll(text, line, &v);
        if (v == -1)
            Py_RETURN_NONE;
        *used = head + (Py_ssize_t)v + 2;
        return resp_bytes(p + head, (Py_ssize_t)v);
    default: {
        resp_ll(text, line, &v);
        if (v == -1)
            Py_RETURN_NONE;
        PyObject *list = PyList_New((Py_ssize_t)v);
        if (list == NULL)
            return NULL;
        Py_ssize_t at = head;
        for (Py_ssize_t i = 0; i < (Py_ssize_t)v; i++) {
            Py_ssize_t item_used;
            PyObject *item = resp_build(r, p + at, n - at, &item_used);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, i, item);
            at += item_used;
        }
        *used = at;
        return list;
    }
    }
}

static void router_set_error(router_obj *r, const resp_error *err)
{
    PyObject *message;
    if (err->message != NULL) {
        message = PyUnicode_FromString(err->message);
    } else {  /* hiredis's chrtos() */
        char c = err->byte, shown[8];
        switch (c) {
        case '\\':
        case '"':
            snprintf(shown, sizeof(shown), "\"\\%c\"", c);
            break;
        case '\n': snprintf(shown, sizeof(shown), "\"\\n\""); break;
        case '\r': snprintf(shown, sizeof(shown), "\"\\r\""); break;
        case '\t': snprintf(shown, sizeof(shown), "\"\\t\""); break;
        case '\a': snprintf(shown, sizeof(shown), "\"\\a\""); break;
        case '\b': snprintf(shown, sizeof(shown), "\"\\b\""); break;
        default:
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                snprintf(shown, sizeof(shown), "\"%c\"", c);
            else
                snprintf(shown, sizeof(shown), "\"\\x%02x\"", (unsigned char)c);
        }
        message = PyUnicode_FromFormat("Protocol error, got %s as reply type byte", shown);
    }
    if (message != NULL)
        Py_XSETREF(r->error, message);
}

static PyObject *router_raise(router_obj *r)
{
    if (r->error != NULL)
        PyErr_SetObject(r->protocol_error, r->error);
    return NULL;
}

/* The next complete reply from buf at *pos (new reference, *pos moved past it); NULL
 * without an exception when none is complete yet, NULL with one on an error. */
static PyObject *router_next(router_obj *r, const char *buf, Py_ssize_t *pos, Py_ssize_t len)
{
    resp_error err = {NULL, 0};
    Py_ssize_t n = resp_scan(r, buf + *pos, len - *pos, &err);
    if (n == 0)
        return NULL;
    if (n < 0) {
        router_set_error(r, &err);
        return router_raise(r);
    }
    Py_ssize_t used;
    PyObject *reply = resp_build(r, buf + *pos, n, &used);
    if (reply != NULL)
        *pos += used;
    return reply;
}

/* Hand one reply to the head unit; its future gets the list when it is complete. */
static int router_route(router_obj *r, PyObject *reply)
{
    if (r->got == NULL && (r->got = PyList_New(0)) == NULL)
        return -1;
    if (PyList_Append(r->got, reply) < 0)
        return -1;
    if (PyList_GET_SIZE(r->got) < r->counts[r->head])
        return 0;
    PyObject *future = r->futures[r->head], *got = r->got;
    r->futures[r->head] = NULL;
    r->got = NULL;
    r->head = (r->head + 1) % r->qcap;
    r->size--;
    r->answered++;
    int rc = 0;
    PyObject *done = PyObject_CallMethodNoArgs(future, str_done);
    if (done == NULL) {
        rc = -1;
    } else {
        int is_done = PyObject_IsTrue(done);
        Py_DECREF(done);
        if (is_done < 0) {
            rc = -1;
        } else if (!is_done) {
            PyObject *ok = PyObject_CallMethodOneArg(future, str_set_result, got);
            if (ok == NULL)
                rc = -1;
            Py_XDECREF(ok);
        }
    }
    Py_DECREF(future);
    Py_DECREF(got);
    return rc;
}

/* Route every complete reply at buf[*pos:len] while units wait. */
static int router_drain(router_obj *r, const char *buf, Py_ssize_t *pos, Py_ssize_t len)
{
    while (r->size > 0) {
        PyObject *reply = router_next(r, buf, pos, len);
        if (reply == NULL)
            return PyErr_Occurred() ? -1 : 0;
        int rc = router_route(r, reply);
        Py_DECREF(reply);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int router_keep(router_obj *r, const char *p, Py_ssize_t n)
{
    if (n == 0)
        return 0;
    if (r->pos > 0 && r->pos == r->len)
        r->pos = r->len = 0;
    if (r->len + n > r->cap) {
        if (r->pos > 0) {  /* drop what was parsed before growing */
            memmove(r->buf, r->buf + r->pos, (size_t)(r->len - r->pos));
            r->len -= r->pos;
            r->pos = 0;
        }
        if (r->len + n > r->cap) {
            Py_ssize_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n)
                cap *= 2;
            char *grown = PyMem_Realloc(r->buf, (size_t)cap);
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            r->buf = grown;
            r->cap = cap;
        }
    }
    memcpy(r->buf + r->len, p, (size_t)n);
    r->len += n;
    return 0;
}

static PyObject *router_feed(router_obj *r, PyObject *data)
{
    if (r->error != NULL)
        return router_raise(r);
    if (r->busy) {
        PyErr_SetString(PyExc_RuntimeError, "ReplyRouter.feed re-entered");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc;
    r->busy = 1;
    if (r->pos == r->len) {  /* nothing buffered: parse the chunk where it is */
        Py_ssize_t pos = 0;
        r->scan_at = 0;  /* no reply begun (it would be buffered) */
        r->scan_depth = 0;
        rc = router_drain(r, view.buf, &pos, view.len);
        if (router_keep(r, (const char *)view.buf + pos, view.len - pos) < 0)
            rc = -1;
    } else {
        rc = router_keep(r, view.buf, view.len);
        if (rc == 0)
            rc = router_drain(r, r->buf, &r->pos, r->len);
    }
    r->busy = 0;
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *router_gets(router_obj *r, PyObject *unused)
{
    if (r->error != NULL)
        return router_raise(r);
    PyObject *reply = router_next(r, r->buf, &r->pos, r->len);
    if (reply == NULL && !PyErr_Occurred())
        Py_RETURN_FALSE;
    return reply;
}

static PyObject *router_push(router_obj *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "push(count, future)");
        return NULL;
    }
    Py_ssize_t count = PyLong_AsSsize_t(args[0]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "a unit waits for one reply or more");
        return NULL;
    }
    if (r->size == r->qcap) {
        Py_ssize_t qcap = r->qcap ? r->qcap * 2 : 64;
        PyObject **futures = PyMem_New(PyObject *, qcap);
        Py_ssize_t *counts = PyMem_New(Py_ssize_t, qcap);
        if (futures == NULL || counts == NULL) {
            PyMem_Free(futures);
            PyMem_Free(counts);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t i = 0; i < r->size; i++) {
            futures[i] = r->futures[(r->head + i) % r->qcap];
            counts[i] = r->counts[(r->head + i) % r->qcap];
        }
        PyMem_Free(r->futures);
        PyMem_Free(r->counts);
        r->futures = futures;
        r->counts = counts;
        r->head = 0;
        r->qcap = qcap;
    }
    Py_ssize_t at = (r->head + r->size) % r->qcap;
    Py_INCREF(args[1]);
    r->futures[at] = args[1];
    r->counts[at] = count;
    r->size++;
    Py_RETURN_NONE;
}

static PyObject *router_take(router_obj *r, PyObject *unused)
{
    PyObject *futures = PyList_New(r->size);
    if (futures == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < r->size; i++) {
        Py_ssize_t at = (r->head + i) % r->qcap;
        PyList_SET_ITEM(futures, i, r->futures[at]);  /* the reference moves to the list */
        r->futures[at] = NULL;
    }
    r->head = r->size = 0;
    Py_CLEAR(r->got);
    return futures;
}

static Py_ssize_t router_len(router_obj *r)
{
    return r->size;
}

static PyObject *router_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"reply_error", "protocol_error", NULL};
    PyObject *reply_error, *protocol_error;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:ReplyRouter", kwlist, &reply_error,
                                     &protocol_error))
        return NULL;
    if (!PyExceptionClass_Check(protocol_error)) {
        PyErr_SetString(PyExc_TypeError, "protocol_error must be an exception class");
        return NULL;
    }
    router_obj *r = (router_obj *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    Py_INCREF(reply_error);
    r->reply_error = reply_error;
    Py_INCREF(protocol_error);
    r->protocol_error = protocol_error;
    return (PyObject *)r;
}

static int router_traverse(router_obj *r, visitproc visit, void *arg)
{
    Py_VISIT(r->reply_error);
    Py_VISIT(r->protocol_error);
    Py_VISIT(r->got);
    for (Py_ssize_t i = 0; i < r->size; i++)
        Py_VISIT(r->futures[(r->head + i) % r->qcap]);
    return 0;
}

static int router_clear(router_obj *r)
{
    Py_CLEAR(r->reply_error);
    Py_CLEAR(r->protocol_error);
    Py_CLEAR(r->got);
    Py_CLEAR(r->error);
    for (Py_ssize_t i = 0; i < r->size; i++)
        Py_CLEAR(r->futures[(r->head + i) % r->qcap]);
    r->head = r->size = 0;
    return 0;
}

static void router_dealloc(router_obj *r)
{
    PyObject_GC_UnTrack(r);
    router_clear(r);
    PyMem_Free(r->futures);
    PyMem_Free(r->counts);
    PyMem_Free(r->buf);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef router_methods[] = {
    {"push", (PyCFunction)(void (*)(void))router_push, METH_FASTCALL,
     "push(count, future): a unit waiting for the next count replies."},
    {"feed", (PyCFunction)router_feed, METH_O,
     "feed(data): parse the complete replies and hand them to the waiting units."},
    {"gets", (PyCFunction)router_gets, METH_NOARGS,
     "gets() -> the next reply, or False when none is complete (as hiredis.Reader)."},
    {"take", (PyCFunction)router_take, METH_NOARGS,
     "take() -> the futures of the waiting units, which are forgotten."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef router_members[] = {
    {"answered", T_PYSSIZET, offsetof(router_obj, answered), READONLY,
     "units whose replies were all routed"},
    {"examined", T_PYSSIZET, offsetof(router_obj, examined), READONLY,
     "octets the reply scanner looked at (a reply is scanned once, however chunked)"},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods router_as_sequence = {
    .sq_length = (lenfunc)router_len,
};

static PyTypeObject router_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "radius._speedups.ReplyRouter",
    .tp_basicsize = sizeof(router_obj),
    .tp_dealloc = (destructor)router_dealloc,
    .tp_as_sequence = &router_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "ReplyRouter(reply_error, protocol_error): RESP2 replies parsed and routed\n"
              "to the units waiting for them (controller.storage.redis_batch.ReplyRouter).",
    .tp_traverse = (traverseproc)router_traverse,
    .tp_clear = (inquiry)router_clear,
    .tp_methods = router_methods,
    .tp_members = router_members,
    .tp_new = router_new,
};

/* module init for this section: called once from PyInit__speedups */
static int resp_replies_init(PyObject *m)
{
    str_done = PyUnicode_InternFromString("done");
    str_set_result = PyUnicode_InternFromString("set_result");
    if (str_done == NULL || str_set_result == NULL || PyType_Ready(&router_type) < 0)
        return -1;
    Py_INCREF(&router_type);
    if (PyModule_AddObject(m, "ReplyRouter", (PyObject *)&router_type) < 0) {
        Py_DECREF(&router_type);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ accounting values */

/*
 * accounting_values(attrs) -> tuple: the twenty field values of an Accounting-Request's
 * event (radius.events.AccountingRequest, status_type to proxy_state) read from its
 * decoded attributes in one call (issue 16: in Python they were about twenty helper
 * calls per request). The twin of radius.events._accounting_values, the reference and
 * the fallback; tests/test_accounting_values.py holds the two to the same tuple.
 *
 * The attribute numbers are not written here: bind_accounting(attrs, statuses,
 * ipv6_text) gives them, in the order of the enum below (radius.events._ACCOUNTING_ATTRS),
 * with the dict of known Acct-Status-Types and the formatter of a 16-octet IPv6 address
 * (RFC 5952 text, as ipaddress writes it: called back, IPv6 attributes being rare).
 *
 *   text:    the first value as UTF-8, invalid octets replaced ("" or None when absent)
 *   integer: the first value when exactly 4 octets, big-endian (RFC 2865 §5)
 *   IPv4:    the dotted quad of a 4-octet first value, else "" (radius.addresses.ipv4_text)
 *   octets:  Acct-Input/Output-Octets + Acct-Input/Output-Gigawords * 2**32 (RFC 2866
 *            §5.3-5.4, RFC 2869 §5.1-5.2); fits 64 bits: (2**32-1) * 2**32 + 2**32-1
 */
enum {
    AK_STATUS_TYPE,
    AK_SESSION_ID,
    AK_USER_NAME,
    AK_CALLING,
    AK_CALLED,
    AK_NAS_ID,
    AK_NAS_IP,
    AK_NAS_IPV6,
    AK_FRAMED_IP,
    AK_FRAMED_IPV6,
    AK_SESSION_TIME,
    AK_IN,
    AK_IN_GIGA,
    AK_OUT,
    AK_OUT_GIGA,
    AK_DELAY,
    AK_EVENT_TIMESTAMP,
    AK_CAUSE,
    AK_CLASS,
    AK_OPERATOR_NAME,
    AK_PROXY_STATE,
    ACCT_KEYS, /* how many attribute numbers bind_accounting() takes */
};
#define ACCT_VALUES 20 /* the tuple's length */

static PyObject *acct_keys[ACCT_KEYS]; /* the attribute numbers (ints) */
static PyObject *acct_statuses;        /* {int: AcctStatus} */
static PyObject *acct_ipv6_text;       /* bytes (16 octets) -> str */
static PyObject *acct_empty;           /* "" */

/* attrs[key] as a borrowed list, or NULL with *failed 0 when absent; *failed 1 on error. */
static PyObject *acct_list(PyObject *attrs, int k, int *failed)
{
    PyObject *values = PyDict_GetItemWithError(attrs, acct_keys[k]);
    if (values == NULL) {
        *failed = PyErr_Occurred() != NULL;
        return NULL;
    }
    if (!PyList_Check(values)) {
        PyErr_Format(PyExc_TypeError, "accounting_values: attrs[%R] is not a list",
                     acct_keys[k]);
        *failed = 1;
        return NULL;
    }
    return values;
}

/* The first value of attrs[key] (borrowed), or NULL with *failed 0 when absent or an
 * empty list; with bytes_only, a first value that is not bytes is a TypeError. */
static PyObject *acct_first(PyObject *attrs, int k, int bytes_only, int *failed)
{
    PyObject *values = acct_list(attrs, k, failed);
    if (values == NULL || PyList_GET_SIZE(values) == 0)
        return NULL;
    PyObject *v = PyList_GET_ITEM(values, 0);
    if (bytes_only && !PyBytes_Check(v)) {
        PyErr_Format(PyExc_TypeError, "accounting_values: attrs[%R][0] is not bytes",
                     acct_keys[k]);
        *failed = 1;
        return NULL;
    }
    return v;
}

/* The first value decoded as UTF-8 with errors="replace"; a new reference to `absent`
 * when there is none. */
static PyObject *acct_text(PyObject *attrs, int k, PyObject *absent)
{
    int failed = 0;
    PyObject *v = acct_first(attrs, k, 1, &failed);
    if (v == NULL)
        return failed ? NULL : Py_NewRef(absent);
    return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), "replace");
}

/* 1 and *out: the first value is 4 octets; 0: absent, empty or another length; -1: error. */
static int acct_u32(PyObject *attrs, int k, uint32_t *out)
{
    int failed = 0;
    PyObject *v = acct_first(attrs, k, 1, &failed);
    if (v == NULL)
        return failed ? -1 : 0;
    if (PyBytes_GET_SIZE(v) != 4)
        return 0;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(v);
    *out = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
           (uint32_t)p[3];
    return 1;
}

/* A 32-bit integer attribute as an int, None when absent or not 4 octets. */
static PyObject *acct_integer(PyObject *attrs, int k)
{
    uint32_t n;
    int rc = acct_u32(attrs, k, &n);
    if (rc < 0)
        return NULL;
    return rc ? PyLong_FromUnsignedLong(n) : Py_NewRef(Py_None);
}

/* Octets and their Gigawords (RFC 2869 §5.1-5.2), each 0 when absent or not 4 octets. */
static PyObject *acct_octets(PyObject *attrs, int k_octets, int k_giga)
{
    uint32_t low = 0, high = 0;
    if (acct_u32(attrs, k_octets, &low) < 0 || acct_u32(attrs, k_giga, &high) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(((unsigned long long)high << 32) | low);
}

/* The dotted quad (as socket.inet_ntoa writes it) of a 4-octet first value, else "". */
static PyObject *acct_ipv4(PyObject *attrs, int k)
{
    int failed = 0;
    PyObject *v = acct_first(attrs, k, 1, &failed);
    if (v == NULL)
        return failed ? NULL : Py_NewRef(acct_empty);
    if (PyBytes_GET_SIZE(v) != 4)
        return Py_NewRef(acct_empty);
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(v);
    char text[16]; /* "255.255.255.255" */
    Py_ssize_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned int octet = p[i];
        if (i)
            text[n++] = '.';
        if (octet >= 100)
            text[n++] = (char)('0' + octet / 100);
        if (octet >= 10)
            text[n++] = (char)('0' + octet / 10 % 10);
        text[n++] = (char)('0' + octet % 10);
    }
    return PyUnicode_DecodeASCII(text, n, NULL);
}

/* ipv6_text(value) for a 16-octet first value, else "". */
static PyObject *acct_ipv6(PyObject *attrs, int k)
{
    int failed = 0;
    PyObject *v = acct_first(attrs, k, 1, &failed);
    if (v == NULL)
        return failed ? NULL : Py_NewRef(acct_empty);
    if (PyBytes_GET_SIZE(v) != 16)
        return Py_NewRef(acct_empty);
    Py_INCREF(v); /* Python code runs: keep the value alive whatever it does to attrs */
    PyObject *text = PyObject_CallOneArg(acct_ipv6_text, v);
    Py_DECREF(v);
    return text;
}

static PyObject *sp_bind_accounting(PyObject *self, PyObject *args)
{
    PyObject *keys, *statuses, *ipv6_text;
    if (!PyArg_ParseTuple(args, "O!O!O:bind_accounting", &PyTuple_Type, &keys, &PyDict_Type,
                          &statuses, &ipv6_text))
        return NULL;
    if (PyTuple_GET_SIZE(keys) != ACCT_KEYS) {
        PyErr_Format(PyExc_ValueError, "bind_accounting: %d attribute numbers, not %zd",
                     ACCT_KEYS, PyTuple_GET_SIZE(keys));
        return NULL;
    }
    for (int i = 0; i < ACCT_KEYS; i++) {
        if (!PyLong_Check(PyTuple_GET_ITEM(keys, i))) {
            PyErr_SetString(PyExc_TypeError, "bind_accounting: attribute numbers are ints");
            return NULL;
        }
    }
    if (!PyCallable_Check(ipv6_text)) {
        PyErr_SetString(PyExc_TypeError, "bind_accounting: ipv6_text is a callable");
        return NULL;
    }
    for (int i = 0; i < ACCT_KEYS; i++)
        Py_XSETREF(acct_keys[i], Py_NewRef(PyTuple_GET_ITEM(keys, i)));
    Py_XSETREF(acct_statuses, Py_NewRef(statuses));
    Py_XSETREF(acct_ipv6_text, Py_NewRef(ipv6_text));
    Py_RETURN_NONE;
}

static PyObject *sp_accounting_values(PyObject *self, PyObject *attrs)
{
    if (acct_statuses == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "radius._speedups.bind_accounting() was not called");
        return NULL;
    }
    if (!PyDict_Check(attrs)) {
        PyErr_SetString(PyExc_TypeError, "accounting_values(attrs): attrs is a dict");
        return NULL;
    }
    PyObject *out = PyTuple_New(ACCT_VALUES);
    if (out == NULL)
        return NULL;
    int i = 0, rc, failed = 0;
    uint32_t n;
    PyObject *klass, *proxy;
#define PUT(expr)                                   \
    do {                                            \
        PyObject *item_ = (expr);                   \
        if (item_ == NULL)                          \
            goto fail;                              \
        PyTuple_SET_ITEM(out, i++, item_);          \
    } while (0)

    /* status_type, status */
    rc = acct_u32(attrs, AK_STATUS_TYPE, &n);
    if (rc < 0)
        goto fail;
    if (rc) {
        PyObject *number = PyLong_FromUnsignedLong(n);
        if (number == NULL)
            goto fail;
        PyTuple_SET_ITEM(out, i++, number);
        PyObject *status = PyDict_GetItemWithError(acct_statuses, number);
        if (status == NULL && PyErr_Occurred())
            goto fail;
        PUT(Py_NewRef(status != NULL ? status : Py_None));
    } else {
        PUT(Py_NewRef(Py_None));
        PUT(Py_NewRef(Py_None));
    }
    PUT(acct_text(attrs, AK_SESSION_ID, acct_empty));
    PUT(acct_text(attrs, AK_USER_NAME, acct_empty));
    PUT(acct_text(attrs, AK_CALLING, acct_empty));
    PUT(acct_text(attrs, AK_CALLED, acct_empty));
    PUT(acct_text(attrs, AK_NAS_ID, acct_empty));
    PUT(acct_ipv4(attrs, AK_NAS_IP));
    PUT(acct_ipv6(attrs, AK_NAS_IPV6));
    PUT(acct_ipv4(attrs, AK_FRAMED_IP));
    PUT(acct_ipv6(attrs, AK_FRAMED_IPV6));

    n = 0;
    if (acct_u32(attrs, AK_SESSION_TIME, &n) < 0)
        goto fail;
    PUT(PyLong_FromUnsignedLong(n)); /* 0 when absent, as `or 0` */
    PUT(acct_octets(attrs, AK_IN, AK_IN_GIGA));
    PUT(acct_octets(attrs, AK_OUT, AK_OUT_GIGA));
    n = 0;
    if (acct_u32(attrs, AK_DELAY, &n) < 0)
        goto fail;
    PUT(PyLong_FromUnsignedLong(n));
    PUT(acct_integer(attrs, AK_EVENT_TIMESTAMP));
    PUT(acct_integer(attrs, AK_CAUSE));

    /* klass: the first Class as it is (any object, as klass[0] in Python) */
    klass = acct_first(attrs, AK_CLASS, 0, &failed);
    if (failed)
        goto fail;
    PUT(Py_NewRef(klass != NULL ? klass : Py_None));
    PUT(acct_text(attrs, AK_OPERATOR_NAME, Py_None));

    /* proxy_state: tuple(values), () when absent or empty */
    proxy = acct_list(attrs, AK_PROXY_STATE, &failed);
    if (failed)
        goto fail;
    PUT(proxy != NULL && PyList_GET_SIZE(proxy) > 0 ? PyList_AsTuple(proxy) : PyTuple_New(0));
#undef PUT
    return out;

fail:
    Py_DECREF(out); /* the slots not filled yet are NULL: a tuple's dealloc skips them */
    return NULL;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"bind", sp_bind, METH_VARARGS,
     "bind(request_type, packet_error, slots=None): the classes decode_request returns\n"
     "and raises; with slots (Request's six slot descriptors in field order) a Request\n"
     "is built by filling its slots, without calling the class."},
    {"decode_request", (PyCFunction)(void (*)(void))sp_decode_request,
     METH_FASTCALL | METH_KEYWORDS,
     "decode_request(data, secret, require_message_authenticator=True) -> Request\n"
     "As radius.packet.decode_request."},
    {"encode_reply", (PyCFunction)(void (*)(void))sp_encode_reply,
     METH_FASTCALL | METH_KEYWORDS,
     "encode_reply(code, request, secret, attrs=b'', *, message_authenticator=None) -> bytes\n"
     "As radius.packet.encode_reply."},
    {"recv_batch", sp_recv_batch, METH_VARARGS,
     "recv_batch(fd, max_count, bufsize=4096) -> list of (bytes, address)\n"
     "Up to max_count datagrams in one recvmmsg(2), non-blocking ([] when none wait)."},
    {"send_batch", sp_send_batch, METH_VARARGS,
     "send_batch(fd, items) -> int\n"
     "Send (bytes, address) items with sendmmsg(2), non-blocking; returns how many went\n"
     "out (fewer than given when the socket buffer is full). Numeric addresses only."},
    {"md5", sp_md5, METH_O, "md5(data) -> 16-octet digest (RFC 1321)."},
    {"hmac_md5", sp_hmac_md5, METH_VARARGS, "hmac_md5(key, data) -> 16 octets (RFC 2104)."},
    {"bind_dedup", sp_bind_dedup, METH_O,
     "bind_dedup(in_progress): the sentinel DedupCache.lookup returns for a request in\n"
     "progress (radius.dedup.IN_PROGRESS)."},
    {"pack_commands", sp_pack_commands, METH_O,
     "pack_commands(commands) -> bytes\n"
     "Each command a RESP array of bulk strings, all in one buffer: the octets of\n"
     "b''.join(hiredis.pack_command(tuple(c)) for c in commands)."},
    {"bind_accounting", sp_bind_accounting, METH_VARARGS,
     "bind_accounting(attrs, statuses, ipv6_text): the attribute numbers\n"
     "accounting_values reads (radius.events._ACCOUNTING_ATTRS), the known\n"
     "Acct-Status-Types ({int: AcctStatus}) and the formatter of a 16-octet IPv6 address."},
    {"accounting_values", sp_accounting_values, METH_O,
     "accounting_values(attrs) -> tuple\n"
     "As radius.events._accounting_values: an Accounting-Request's field values from\n"
     "status_type to proxy_state (issue 16)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "radius._speedups",
    "Compiled RADIUS codec and batched UDP I/O (see radius/fastpath.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    str_code = PyUnicode_InternFromString("code");
    str_identifier = PyUnicode_InternFromString("identifier");
    str_authenticator = PyUnicode_InternFromString("authenticator");
    str_attrs = PyUnicode_InternFromString("attrs");
    str_get = PyUnicode_InternFromString("get");
    proxy_state_key = PyLong_FromLong(PROXY_STATE);
    acct_empty = PyUnicode_FromStringAndSize("", 0);
    if (!str_code || !str_identifier || !str_authenticator || !str_attrs || !str_get ||
        !proxy_state_key || !acct_empty)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyType_Ready(&entry_type) < 0 || PyType_Ready(&dedup_type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyType_Ready(&counters_type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&counters_type);
    if (PyModule_AddObject(m, "Counters", (PyObject *)&counters_type) < 0) {
        Py_DECREF(&counters_type);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&dedup_type);
    if (PyModule_AddObject(m, "DedupCache", (PyObject *)&dedup_type) < 0) {
        Py_DECREF(&dedup_type);
        Py_DECREF(m);
        return NULL;
    }
    if (resp_replies_init(m) < 0) {  /* the RESP replies section */
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
