"""Domain: the city's rules as pure code (quota days and usage, the access decision,
enforcement planning, identities and Class, the venue registry, phone and MAC notation,
periods, messages) and the types the layers above exchange (``state``: a person as the
store reads them, an accounting write and its result; ``ledger`` and ``audit``: the rows
of the archive). No I/O, no clock: time comes in as an argument. Imports only ``config``
and ``radius`` (the protocol types)."""
