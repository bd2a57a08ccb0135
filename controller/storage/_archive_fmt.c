/* controller.storage._archive_fmt: the archiver's per-entry work in C (issue 16 item 3).
 *
 * The outbox entries of a round (10,000) are routed by kind (``route``) on the event
 * loop's thread, and the login entries become their audit rows' CSV lines
 * (``login_csv``) in the writer thread: a few calls per round instead of a dozen Python
 * operations per entry. ``controller.storage.archive_text`` is the reference model and
 * the fallback (its ``route_py`` and ``login_lines``); the output here is the same bytes
 * (tests/test_archive_fmt.py, tests/fuzz_atheris_archive.py hold the two together).
 *
 * An entry is a tuple (id, fields): ``fields`` the stream's flat list (name, value, ...)
 * of bytes. A name given twice: its last value counts (a dict of the pairs keeps that
 * one); an odd list's last name has no value (empty); a missing field is empty. Nothing
 * here decodes: values go out as the bytes they are, a '"' inside doubled.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* the fields looked up, in the order of the login row's columns (LOGIN_COLUMNS) after
 * the three route needs */
enum {
    F_K,
    F_T,
    F_REF,
    F_PID, /* LOGIN_COLUMNS from here: who (8), result, the address (8) */
    F_MAC,
    F_IP,
    F_CLIENT,
    F_NAS_ID,
    F_NAS_IP,
    F_AP,
    F_VENUE,
    F_RESULT,
    F_IPV6,
    F_IPV6_PREFIX,
    F_IPV6_DELEGATED,
    F_NAS_IPV6,
    F_NAS_SRC,
    F_NAS_PUBLIC,
    F_NAT_IP,
    F_NAT_PORTS,
    F_COUNT
};

static const struct {
    const char *name;
    Py_ssize_t len;
} NAMES[F_COUNT] = {
#define N(s) {s, sizeof(s) - 1}
    N("k"),          N("t"),           N("ref"),
    N("pid"),        N("mac"),         N("ip"),
    N("client"),     N("nas_id"),      N("nas_ip"),
    N("ap"),         N("venue"),       N("result"),
    N("ipv6"),       N("ipv6_prefix"), N("ipv6_delegated"),
    N("nas_ipv6"),   N("nas_src"),     N("nas_public"),
    N("nat_ip"),     N("nat_ports"),
#undef N
};
#define WHO_FIRST F_PID
#define WHO_COUNT 8
#define ADDRESS_FIRST F_IPV6
#define ADDRESS_COUNT 8

static PyObject *EMPTY; /* b"" */

/* Which of NAMES this field name is, or -1. */
static int name_id(const char *s, Py_ssize_t n) {
    for (int i = 0; i < F_COUNT; i++) {
        if (NAMES[i].len == n && NAMES[i].name[0] == s[0] && memcmp(NAMES[i].name, s, (size_t)n) == 0)
            return i;
    }
    return -1;
}

/* Point ``out[F_*]`` at the last value of each known name in ``fields`` (borrowed;
 * EMPTY when missing). -1 with TypeError set when the list holds anything but bytes. */
static int pick(PyObject *fields, PyObject **out, int upto) {
    for (int i = 0; i < upto; i++)
        out[i] = EMPTY;
    Py_ssize_t n = PyList_GET_SIZE(fields);
    PyObject **items = PySequence_Fast_ITEMS(fields);
    for (Py_ssize_t i = 0; i < n; i += 2) {
        PyObject *name = items[i];
        if (!PyBytes_CheckExact(name)) {
            PyErr_SetString(PyExc_TypeError, "an outbox field name is not bytes");
            return -1;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(name);
        if (len == 0)
            continue;
        int id = name_id(PyBytes_AS_STRING(name), len);
        if (id < 0 || id >= upto)
            continue;
        PyObject *value = i + 1 < n ? items[i + 1] : EMPTY;
        if (!PyBytes_CheckExact(value)) {
            PyErr_SetString(PyExc_TypeError, "an outbox field value is not bytes");
            return -1;
        }
        out[id] = value;
    }
    return 0;
}

static int entry_parts(PyObject *entry, PyObject **eid, PyObject **fields) {
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "an outbox entry is not an (id, fields) pair");
        return -1;
    }
    *eid = PyTuple_GET_ITEM(entry, 0);
    *fields = PyTuple_GET_ITEM(entry, 1);
    if (!PyBytes_CheckExact(*eid) || !PyList_CheckExact(*fields)) {
        PyErr_SetString(PyExc_TypeError, "an outbox entry is not (bytes, list of bytes)");
        return -1;
    }
    return 0;
}

static int same_bytes(PyObject *a, PyObject *b) {
    return a == b || (PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b) &&
                      memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(a)) == 0);
}

static int bytes_eq(PyObject *a, const char *s, Py_ssize_t n) {
    return PyBytes_GET_SIZE(a) == n && memcmp(PyBytes_AS_STRING(a), s, (size_t)n) == 0;
}

PyDoc_STRVAR(route_doc,
             "route(entries, ids, logins, consoles, pids, refs) -> None\n\n"
             "Sort a read's entries by kind: every id to ``ids``; a login entry to "
             "``logins`` and its ``pid`` to ``pids``; a close's ``ref`` to ``refs``; a "
             "console entry to ``consoles`` (lists and sets, appended to). "
             "``archive_text.route_py`` is the reference.");

static PyObject *route(PyObject *self, PyObject *args) {
    PyObject *entries, *ids, *logins, *consoles, *pids, *refs;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!:route", &PyList_Type, &entries, &PyList_Type, &ids,
                          &PyList_Type, &logins, &PyList_Type, &consoles, &PySet_Type, &pids,
                          &PySet_Type, &refs))
        return NULL;
    PyObject *v[F_PID + 1];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i), *eid, *fields;
        if (entry_parts(entry, &eid, &fields) < 0 || pick(fields, v, F_PID + 1) < 0)
            return NULL;
        if (PyList_Append(ids, eid) < 0)
            return NULL;
        PyObject *k = v[F_K];
        if (bytes_eq(k, "login", 5)) {
            if (PyList_Append(logins, entry) < 0 || PySet_Add(pids, v[F_PID]) < 0)
                return NULL;
        } else if (bytes_eq(k, "close", 5)) {
            if (PySet_Add(refs, v[F_REF]) < 0)
                return NULL;
        } else if (bytes_eq(k, "console", 7)) {
            if (PyList_Append(consoles, entry) < 0)
                return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* A growing output buffer. */
typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline void put(Buf *b, const char *s, size_t n) {
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
#define PUT(b, lit) put((b), (lit), sizeof(lit) - 1)

/* ``value`` with every '"' doubled (what ``archive_text._escaped`` does). */
static inline void put_escaped(Buf *b, PyObject *value) {
    const char *s = PyBytes_AS_STRING(value);
    size_t n = (size_t)PyBytes_GET_SIZE(value);
    const char *q = memchr(s, '"', n);
    if (q == NULL) {
        put(b, s, n);
        return;
    }
    while (q != NULL) {
        size_t upto = (size_t)(q - s) + 1;
        put(b, s, upto);
        b->p[b->len++] = '"';
        s += upto;
        n -= upto;
        q = memchr(s, '"', n);
    }
    put(b, s, n);
}

/* The most a login line can take beyond its values doubled: the fixed text. */
#define LINE_FIXED 256

/* Flush the run of lines of one day as (day, bytes, count) onto ``out``. */
static int flush(PyObject *out, PyObject *day, Buf *b, Py_ssize_t *count) {
    if (*count == 0)
        return 0;
    PyObject *text = PyBytes_FromStringAndSize(b->p, (Py_ssize_t)b->len);
    if (text == NULL)
        return -1;
    PyObject *run = Py_BuildValue("(ONn)", day, text, *count);
    if (run == NULL || PyList_Append(out, run) < 0) {
        Py_XDECREF(run);
        return -1;
    }
    Py_DECREF(run);
    b->len = 0;
    *count = 0;
    return 0;
}

PyDoc_STRVAR(login_csv_doc,
             "login_csv(logins, phones, day_of, archived_at) -> list[(day, bytes, count)]\n\n"
             "The audit rows of login entries as CSV lines, in runs of one local day: "
             "``day_of(t)`` (called when an entry's raw ``t`` differs from the one before) "
             "gives ``(time as ASCII digits, day, day as YYYY-MM-DD bytes)``; ``phones`` maps "
             "a raw pid to its phone (bytes); ``archived_at``: the round's stamp (bytes, "
             "ASCII digits). The lines are those of ``archive_text.login_lines``.");

static PyObject *login_csv(PyObject *self, PyObject *args) {
    PyObject *logins, *phones, *day_of, *stamp;
    if (!PyArg_ParseTuple(args, "O!O!OO!:login_csv", &PyList_Type, &logins, &PyDict_Type, &phones,
                          &day_of, &PyBytes_Type, &stamp))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Buf b = {NULL, 0, 0};
    Py_ssize_t count = 0;
    PyObject *last_t = NULL, *day = NULL, *at = NULL, *day_text = NULL; /* owned */
    PyObject *v[F_COUNT];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(logins); i++) {
        PyObject *eid, *fields;
        if (entry_parts(PyList_GET_ITEM(logins, i), &eid, &fields) < 0 || pick(fields, v, F_COUNT) < 0)
            goto fail;
        PyObject *t = v[F_T];
        if (last_t == NULL || !same_bytes(t, last_t)) { /* a new second: its local day */
            PyObject *got = PyObject_CallOneArg(day_of, t);
            if (got == NULL)
                goto fail;
            if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 3 ||
                !PyBytes_CheckExact(PyTuple_GET_ITEM(got, 0)) ||
                !PyBytes_CheckExact(PyTuple_GET_ITEM(got, 2))) {
                Py_DECREF(got);
                PyErr_SetString(PyExc_TypeError, "day_of must return (bytes, day, bytes)");
                goto fail;
            }
            PyObject *new_day = PyTuple_GET_ITEM(got, 1);
            int same = day == NULL ? 0 : PyObject_RichCompareBool(new_day, day, Py_EQ);
            if (same < 0 || (!same && flush(out, day, &b, &count) < 0)) {
                Py_DECREF(got);
                goto fail;
            }
            Py_XSETREF(day, Py_NewRef(new_day));
            Py_XSETREF(at, Py_NewRef(PyTuple_GET_ITEM(got, 0)));
            Py_XSETREF(day_text, Py_NewRef(PyTuple_GET_ITEM(got, 2)));
            Py_XSETREF(last_t, Py_NewRef(t));
            Py_DECREF(got);
        }
        PyObject *phone = PyDict_GetItemWithError(phones, v[F_PID]);
        if (phone == NULL) {
            if (PyErr_Occurred())
                goto fail;
            phone = EMPTY;
        } else if (!PyBytes_CheckExact(phone)) {
            PyErr_SetString(PyExc_TypeError, "a phone is not bytes");
            goto fail;
        }
        /* the worst case: every value's octets doubled */
        size_t need = LINE_FIXED + (size_t)PyBytes_GET_SIZE(day_text) + (size_t)PyBytes_GET_SIZE(at) +
                      (size_t)PyBytes_GET_SIZE(stamp) +
                      2 * ((size_t)PyBytes_GET_SIZE(eid) + (size_t)PyBytes_GET_SIZE(phone));
        for (int c = WHO_FIRST; c < F_COUNT; c++)
            need += 2 * (size_t)PyBytes_GET_SIZE(v[c]);
        if (reserve(&b, need) < 0)
            goto fail;
        put(&b, PyBytes_AS_STRING(day_text), (size_t)PyBytes_GET_SIZE(day_text));
        PUT(&b, ",\"login:");
        put_escaped(&b, eid);
        PUT(&b, "\",\"login\",");
        put(&b, PyBytes_AS_STRING(at), (size_t)PyBytes_GET_SIZE(at));
        PUT(&b, ",\"");
        put_escaped(&b, phone);
        PUT(&b, "\",");
        for (int c = WHO_FIRST; c < WHO_FIRST + WHO_COUNT; c++) {
            PUT(&b, "\"");
            put_escaped(&b, v[c]);
            PUT(&b, "\",");
        }
        PUT(&b, ",,\"");
        put_escaped(&b, v[F_RESULT]);
        PUT(&b, "\",\"\",");
        put(&b, PyBytes_AS_STRING(stamp), (size_t)PyBytes_GET_SIZE(stamp));
        for (int c = ADDRESS_FIRST; c < ADDRESS_FIRST + ADDRESS_COUNT; c++) {
            PUT(&b, ",\"");
            put_escaped(&b, v[c]);
            PUT(&b, "\"");
        }
        PUT(&b, "\n");
        count++;
    }
    if (flush(out, day, &b, &count) < 0)
        goto fail;
    PyMem_Free(b.p);
    Py_XDECREF(last_t);
    Py_XDECREF(day);
    Py_XDECREF(at);
    Py_XDECREF(day_text);
    return out;
fail:
    PyMem_Free(b.p);
    Py_XDECREF(last_t);
    Py_XDECREF(day);
    Py_XDECREF(at);
    Py_XDECREF(day_text);
    Py_DECREF(out);
    return NULL;
}


/* -- closed sessions: a record's ledger row and audit row (``archive_text.session_lines``) */

/* the record's fields, in the order of ``archive_text._SESSION_COLUMNS`` */
enum {
    S_START,
    S_CLOSED,
    S_SEEN,
    S_IN,
    S_OUT,
    S_KNOWN,
    S_ACCT_SESSION_ID,
    S_VENUE_TYPE,
    S_DISTRICT,
    S_OPERATOR,
    S_CAUSE,
    S_WHO, /* pid mac ip client nas_id nas_ip ap venue */
    S_ADDRESS = S_WHO + WHO_COUNT,
    S_COUNT = S_ADDRESS + ADDRESS_COUNT
};
#define S_PID S_WHO
#define S_CLIENT (S_WHO + 3)
#define S_AP (S_WHO + 6)
#define S_VENUE (S_WHO + 7)

static const struct {
    const char *name;
    Py_ssize_t len;
} SNAMES[S_COUNT] = {
#define N(s) {s, sizeof(s) - 1}
    N("start"),    N("closed"),      N("seen"),           N("in"),         N("out"),
    N("known"),    N("acct_session_id"), N("venue_type"), N("district"),   N("operator"),
    N("cause"),    N("pid"),         N("mac"),            N("ip"),         N("client"),
    N("nas_id"),   N("nas_ip"),      N("ap"),             N("venue"),      N("ipv6"),
    N("ipv6_prefix"), N("ipv6_delegated"), N("nas_ipv6"), N("nas_src"),    N("nas_public"),
    N("nat_ip"),   N("nat_ports"),
#undef N
};

static int sname_id(const char *s, Py_ssize_t n) {
    for (int i = 0; i < S_COUNT; i++) {
        if (SNAMES[i].len == n && SNAMES[i].name[0] == s[0] && memcmp(SNAMES[i].name, s, (size_t)n) == 0)
            return i;
    }
    return -1;
}

static int all_digits(PyObject *v) { /* bytes.isdigit() of a non-empty value */
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(v);
    Py_ssize_t n = PyBytes_GET_SIZE(v);
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return n > 0;
}

/* A session record's columns, or 0: not the common case (the caller takes the
 * reference path). ``has``: which names are there at all; ``counted``: the value of its
 * one ``d:<YYYYMMDD>`` field (NULL: none), ``counted_day`` that day as YYYY-MM-DD.
 * -1 with TypeError: a name or value is not bytes. */
static int spick(PyObject *fields, PyObject **v, int *has, PyObject **counted, char *counted_day) {
    for (int i = 0; i < S_COUNT; i++) {
        v[i] = EMPTY;
        has[i] = 0;
    }
    *counted = NULL;
    PyObject *day_name = NULL;
    Py_ssize_t n = PyList_GET_SIZE(fields);
    PyObject **items = PySequence_Fast_ITEMS(fields);
    for (Py_ssize_t i = 0; i < n; i += 2) {
        PyObject *name = items[i];
        PyObject *value = i + 1 < n ? items[i + 1] : EMPTY;
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value)) {
            PyErr_SetString(PyExc_TypeError, "a session field is not bytes");
            return -1;
        }
        const char *s = PyBytes_AS_STRING(name);
        Py_ssize_t len = PyBytes_GET_SIZE(name);
        if (len >= 2 && s[0] == 'd' && s[1] == ':') {
            if (day_name != NULL && !same_bytes(name, day_name))
                return 0; /* counted on more than one day */
            day_name = name;
            *counted = value;
            continue;
        }
        int id = len ? sname_id(s, len) : -1;
        if (id >= 0) {
            v[id] = value;
            has[id] = 1;
        }
    }
    if (day_name != NULL) {
        const char *d = PyBytes_AS_STRING(day_name) + 2;
        if (PyBytes_GET_SIZE(day_name) != 10)
            return 0;
        for (int i = 0; i < 8; i++)
            if (d[i] < '0' || d[i] > '9')
                return 0;
        memcpy(counted_day, d, 4);
        counted_day[4] = '-';
        memcpy(counted_day + 5, d + 4, 2);
        counted_day[7] = '-';
        memcpy(counted_day + 8, d + 6, 2);
    }
    return 1;
}

/* ASCII digits as min(int(value), 2**63 - 1); empty: 0 */
static long long saturated(PyObject *v) {
    const char *s = PyBytes_AS_STRING(v);
    Py_ssize_t n = PyBytes_GET_SIZE(v);
    unsigned long long x = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        x = x * 10 + (unsigned)(s[i] - '0');
        if (x > (unsigned long long)LLONG_MAX)
            return LLONG_MAX;
    }
    return (long long)x;
}

static inline void put_bytes(Buf *b, PyObject *v) {
    put(b, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
}

static inline void put_quoted(Buf *b, PyObject *v) {
    b->p[b->len++] = '"';
    put_escaped(b, v);
    b->p[b->len++] = '"';
}

/* One day's run of ledger and audit lines. */
typedef struct {
    Buf ledger, audit;
    Py_ssize_t count;
} Run;

static int flush_run(PyObject *out, PyObject *day, Run *r) {
    if (r->count == 0)
        return 0;
    PyObject *ledger = PyBytes_FromStringAndSize(r->ledger.p, (Py_ssize_t)r->ledger.len);
    PyObject *audit = ledger ? PyBytes_FromStringAndSize(r->audit.p, (Py_ssize_t)r->audit.len) : NULL;
    if (audit == NULL) {
        Py_XDECREF(ledger);
        return -1;
    }
    PyObject *run = Py_BuildValue("(ONNn)", day, ledger, audit, r->count);
    if (run == NULL || PyList_Append(out, run) < 0) {
        Py_XDECREF(run);
        return -1;
    }
    Py_DECREF(run);
    r->ledger.len = r->audit.len = 0;
    r->count = 0;
    return 0;
}

PyDoc_STRVAR(session_csv_doc,
             "session_csv(records, day_of, archived_at) -> (runs, refused)\n\n"
             "The ledger and audit rows of closed sessions, ``records`` a list of (fields, "
             "phone) (bytes): ``runs`` a list of (day, ledger bytes, audit bytes, count) in "
             "runs of one local day, ``refused`` the indexes of the records left to the "
             "reference builders (``archive_text.session_lines`` returns False for them). "
             "``day_of(start)`` (a raw start of ASCII digits, b\"0\" when none) gives "
             "``(start as ASCII digits, day, day as YYYY-MM-DD bytes)``.");

static PyObject *session_csv(PyObject *self, PyObject *args) {
    PyObject *records, *day_of, *stamp;
    if (!PyArg_ParseTuple(args, "O!OO!:session_csv", &PyList_Type, &records, &day_of, &PyBytes_Type,
                          &stamp))
        return NULL;
    PyObject *out = PyList_New(0), *refused = PyList_New(0), *result = NULL;
    Run r = {{NULL, 0, 0}, {NULL, 0, 0}, 0};
    PyObject *last = NULL, *day = NULL, *start_text = NULL, *day_text = NULL; /* owned */
    PyObject *zero = PyBytes_FromStringAndSize("0", 1);
    if (out == NULL || refused == NULL || zero == NULL)
        goto done;
    PyObject *v[S_COUNT], *counted;
    int has[S_COUNT];
    char counted_day[10];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyTuple_Check(rec) || PyTuple_GET_SIZE(rec) != 2 ||
            !PyList_CheckExact(PyTuple_GET_ITEM(rec, 0)) ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(rec, 1))) {
            PyErr_SetString(PyExc_TypeError, "a session is not a (list of bytes, bytes) pair");
            goto done;
        }
        PyObject *phone = PyTuple_GET_ITEM(rec, 1);
        int ok = spick(PyTuple_GET_ITEM(rec, 0), v, has, &counted, counted_day);
        if (ok < 0)
            goto done;
        for (int c = S_START; ok && c <= S_OUT; c++)
            if (PyBytes_GET_SIZE(v[c]) && !all_digits(v[c]))
                ok = 0;
        if (!ok) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(refused, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
            continue;
        }
        PyObject *start = PyBytes_GET_SIZE(v[S_START]) ? v[S_START] : zero;
        if (last == NULL || !same_bytes(start, last)) {
            PyObject *got = PyObject_CallOneArg(day_of, start);
            if (got == NULL)
                goto done;
            if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 3 ||
                !PyBytes_CheckExact(PyTuple_GET_ITEM(got, 0)) ||
                !PyBytes_CheckExact(PyTuple_GET_ITEM(got, 2))) {
                Py_DECREF(got);
                PyErr_SetString(PyExc_TypeError, "day_of must return (bytes, day, bytes)");
                goto done;
            }
            PyObject *new_day = PyTuple_GET_ITEM(got, 1);
            int same = day == NULL ? 0 : PyObject_RichCompareBool(new_day, day, Py_EQ);
            if (same < 0 || (!same && flush_run(out, day, &r) < 0)) {
                Py_DECREF(got);
                goto done;
            }
            Py_XSETREF(day, Py_NewRef(new_day));
            Py_XSETREF(start_text, Py_NewRef(PyTuple_GET_ITEM(got, 0)));
            Py_XSETREF(day_text, Py_NewRef(PyTuple_GET_ITEM(got, 2)));
            Py_XSETREF(last, Py_NewRef(start));
            Py_DECREF(got);
        }
        PyObject *seconds = zero;
        if (counted != NULL && PyBytes_GET_SIZE(counted) &&
            (!all_digits(counted) || saturated(counted) != 0)) {
            /* counted on that day (the start's, in the common case) */
            if (!all_digits(counted) || PyBytes_GET_SIZE(day_text) != 10 ||
                memcmp(PyBytes_AS_STRING(day_text), counted_day, 10)) {
                PyObject *index = PyLong_FromSsize_t(i); /* not the common case */
                if (index == NULL || PyList_Append(refused, index) < 0) {
                    Py_XDECREF(index);
                    goto done;
                }
                Py_DECREF(index);
                continue;
            }
            seconds = counted;
        }
        size_t values = 64 + (size_t)PyBytes_GET_SIZE(phone) + 3 * (size_t)PyBytes_GET_SIZE(stamp) +
                        4 * (size_t)PyBytes_GET_SIZE(start_text) + 2 * (size_t)PyBytes_GET_SIZE(day_text) +
                        (size_t)PyBytes_GET_SIZE(seconds);
        for (int c = 0; c < S_COUNT; c++)
            values += 2 * (size_t)PyBytes_GET_SIZE(v[c]);
        if (reserve(&r.ledger, 2 * values + 256) < 0 || reserve(&r.audit, 2 * values + 256) < 0)
            goto done;
        PyObject *rid_start = has[S_START] ? v[S_START] : zero;
        Buf *L = &r.ledger, *A = &r.audit;
        /* the record id: "<pid>|<client>/<acct_session_id>|<start>", quoted */
#define RID(b)                                                                                     \
    do {                                                                                           \
        (b)->p[(b)->len++] = '"';                                                                  \
        put_escaped((b), v[S_PID]);                                                                \
        (b)->p[(b)->len++] = '|';                                                                  \
        put_escaped((b), v[S_CLIENT]);                                                             \
        (b)->p[(b)->len++] = '/';                                                                  \
        put_escaped((b), v[S_ACCT_SESSION_ID]);                                                    \
        (b)->p[(b)->len++] = '|';                                                                  \
        put_escaped((b), rid_start);                                                               \
        (b)->p[(b)->len++] = '"';                                                                  \
    } while (0)
        /* ledger: day, first_day, record_id, pid, known, venue, venue_type, district,
         * operator, client, ap, start, stop, seconds, octets_in, octets_out, cause,
         * session_seconds, archived_at */
        put_bytes(L, day_text);
        PUT(L, ",");
        put_bytes(L, day_text);
        PUT(L, ",");
        RID(L);
        PUT(L, ",");
        put_quoted(L, v[S_PID]);
        if (!has[S_KNOWN] || bytes_eq(v[S_KNOWN], "1", 1))
            PUT(L, ",true,");
        else
            PUT(L, ",false,");
        put_quoted(L, v[S_VENUE]);
        PUT(L, ",");
        put_quoted(L, v[S_VENUE_TYPE]);
        PUT(L, ",");
        put_quoted(L, v[S_DISTRICT]);
        PUT(L, ",");
        put_quoted(L, v[S_OPERATOR]);
        PUT(L, ",");
        put_quoted(L, v[S_CLIENT]);
        PUT(L, ",");
        put_quoted(L, v[S_AP]);
        PUT(L, ",");
        put_bytes(L, start_text);
        PUT(L, ",");
        put_bytes(L, PyBytes_GET_SIZE(v[S_CLOSED]) ? v[S_CLOSED] : start_text);
        PUT(L, ",");
        put_bytes(L, seconds);
        char num[48];
        int k = snprintf(num, sizeof num, ",%lld,%lld,", saturated(v[S_IN]), saturated(v[S_OUT]));
        put(L, num, (size_t)k);
        put_quoted(L, v[S_CAUSE]);
        PUT(L, ",");
        put_bytes(L, PyBytes_GET_SIZE(v[S_SEEN]) ? v[S_SEEN] : zero);
        PUT(L, ",");
        put_bytes(L, stamp);
        PUT(L, "\n");
        /* audit: day, record_id, "session", time, phone, who (8), start, stop, "closed",
         * cause, archived_at, the address (8) */
        put_bytes(A, day_text);
        PUT(A, ",");
        RID(A);
        PUT(A, ",\"session\",");
        put_bytes(A, start_text);
        PUT(A, ",");
        put_quoted(A, phone);
        PUT(A, ",");
        for (int c = S_WHO; c < S_WHO + WHO_COUNT; c++) {
            put_quoted(A, v[c]);
            PUT(A, ",");
        }
        put_bytes(A, start_text);
        PUT(A, ",");
        put_bytes(A, v[S_CLOSED]);
        PUT(A, ",\"closed\",");
        put_quoted(A, v[S_CAUSE]);
        PUT(A, ",");
        put_bytes(A, stamp);
        for (int c = S_ADDRESS; c < S_COUNT; c++) {
            PUT(A, ",");
            put_quoted(A, v[c]);
        }
        PUT(A, "\n");
#undef RID
        r.count++;
    }
    if (flush_run(out, day, &r) < 0)
        goto done;
    result = PyTuple_Pack(2, out, refused);
done:
    PyMem_Free(r.ledger.p);
    PyMem_Free(r.audit.p);
    Py_XDECREF(last);
    Py_XDECREF(day);
    Py_XDECREF(start_text);
    Py_XDECREF(day_text);
    Py_XDECREF(zero);
    Py_XDECREF(out);
    Py_XDECREF(refused);
    return result;
}

static PyMethodDef methods[] = {
    {"route", route, METH_VARARGS, route_doc},
    {"login_csv", login_csv, METH_VARARGS, login_csv_doc},
    {"session_csv", session_csv, METH_VARARGS, session_csv_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "controller.storage._archive_fmt",
    "The archiver's routing and login-row formatting in C (archive_text is the reference).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__archive_fmt(void) {
    if (EMPTY == NULL) {
        EMPTY = PyBytes_FromStringAndSize("", 0);
        if (EMPTY == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
