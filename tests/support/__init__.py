"""Test kits shared by the test modules: a portal test city (``portal_kit``), packet
fuzzing helpers (``fuzz_kit``), Redis processes and topologies (``redis_proc``,
``redis_topologies``), real RADIUS peers (``peers``: FreeRADIUS, radsecproxy), a NAS fleet
for fault tests (``acct_load``), FreeRADIUS's ``radclient`` (``radclient``) and an
independent RADIUS client built on pyrad (``pyrad_client``). Not part of the package."""
