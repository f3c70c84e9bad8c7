/*
 * rudp._accel: optional compiled helpers for the wire hot path.
 *
 * The segment checksum (docs/wire.md), the RFC 1071 one's-complement sum of
 * big-endian 16-bit words with an odd final byte padded by a zero byte; and
 * parse_segment/build_segment/build_segment_ts, the per-segment work of
 * rudp.wire.segment (RFC 9293 section 3.1 header, RFC 7323 timestamps).
 * rudp.wire falls back to its pure-Python functions when this module is absent
 * (or RUDP_PURE_PYTHON=1), and both must return identical values for every
 * input; tests/test_accel.py compares them.
 *
 * How the sum is computed fast (RFC 1071 section 2):
 *   (A) the sum is associative and commutative, so any grouping works;
 *   (B) it is byte-order independent: summing the words in the machine's own
 *       order and swapping the bytes of the folded 16-bit result gives the
 *       big-endian sum;
 *   (C) carries can be deferred: we add 64-bit words, count the carries out
 *       of the top bit, and fold everything back in at the end. Because
 *       2**16 == 1 (mod 0xFFFF), so is 2**64 and folding keeps the value mod
 *       0xFFFF; a non-zero input never folds to 0, so the result is 0 for an
 *       all-zero input and in 1..0xFFFF otherwise -- exactly what the Python
 *       implementation (int.from_bytes(...) % 0xFFFF, 0 -> 0xFFFF) returns.
 * Loads use memcpy, so no alignment is needed.
 *
 * Segments: parse_segment returns an instance of the pure-Python class
 * rudp.wire.segment.Segment, so both implementations hand the engine the same
 * type. bind_segment(Segment, ParseError) tells the module that class: it must
 * have __slots__ (member descriptors) for every field, and parse_segment fills
 * the slots of a new instance directly (as Segment.__init__ would, which must
 * stay plain assignments). Everything lives in per-module state, so the module
 * is safe with sub-interpreters; nothing is mutated after binding, so it is
 * safe without the GIL too.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX (Py_T_OBJECT_EX from 3.12) */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif
#ifndef Py_READONLY
#define Py_READONLY READONLY
#endif

#define MODULE_NAME "rudp._accel"

/* setup.py defines RUDP_ACCEL_SOURCE_SHA256 as the hex SHA-256 of this file. */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#ifdef RUDP_ACCEL_SOURCE_SHA256
#define SOURCE_SHA256 STRINGIFY(RUDP_ACCEL_SOURCE_SHA256)
#else
#define SOURCE_SHA256 "unknown"
#endif

/* Add a 64-bit word to an accumulator, counting the carries out of bit 63 in c
 * (each lost 2**64 is == 1 mod 0xFFFF, so it is added back at the end). */
#define ADD_CARRY(a, c, x) \
    do {                   \
        (a) += (x);        \
        (c) += (a) < (x);  \
    } while (0)

static inline uint64_t
fold33(uint64_t s)
{
    return (s & 0xFFFFFFFFu) + (s >> 32);
}

/* Deferred-carry sum of n bytes in native byte order (see (B), (C)); the
 * return value is < 2**35 and congruent mod 0xFFFF to the native-order sum.
 * Two independent add/carry chains of 64-bit words: ~30 GB/s on x86-64 with
 * GCC -O2 or -O3, without relying on the auto-vectoriser. */
static uint64_t
sum_native(const unsigned char *p, Py_ssize_t n)
{
    uint64_t a0 = 0, a1 = 0, c0 = 0, c1 = 0, x, y;
    Py_ssize_t i = 0;

    for (; i + 16 <= n; i += 16) {
        memcpy(&x, p + i, 8);
        memcpy(&y, p + i + 8, 8);
        ADD_CARRY(a0, c0, x);
        ADD_CARRY(a1, c1, y);
    }
    if (i + 8 <= n) {
        memcpy(&x, p + i, 8);
        ADD_CARRY(a0, c0, x);
        i += 8;
    }
    if (i < n) {
        /* 1..7 trailing bytes, zero-padded in memory order: this is the RFC's
         * zero pad byte for an odd length (the tail starts at an even offset,
         * so padding never moves a byte to the other half of its word). */
        x = 0;
        memcpy(&x, p + i, (size_t)(n - i));
        ADD_CARRY(a1, c1, x);
    }
    return fold33(a0) + fold33(a1) + fold33(c0) + fold33(c1);
}

/* Fold a deferred-carry sum to 16 bits with end-around carry: 0 stays 0, any
 * other value lands in 1..0xFFFF, congruent mod 0xFFFF. */
static inline uint32_t
fold16(uint64_t s)
{
    s = (s & 0xFFFFFFFFu) + (s >> 32);
    s = (s & 0xFFFFFFFFu) + (s >> 32);
    s = (s & 0xFFFFu) + (s >> 16);
    s = (s & 0xFFFFu) + (s >> 16);
    s = (s & 0xFFFFu) + (s >> 16);
    return (uint32_t)s;
}

static inline uint32_t
swap16(uint32_t s)
{
    return ((s >> 8) | (s << 8)) & 0xFFFFu;
}

/* The big-endian one's-complement sum (0..0xFFFF) of n bytes. */
static inline uint32_t
sum_be(const unsigned char *p, Py_ssize_t n)
{
    uint32_t s = fold16(sum_native(p, n));
#if PY_BIG_ENDIAN
    return s;
#else
    return swap16(s);
#endif
}

/* Borrow a C-contiguous byte view of obj. PyBUF_SIMPLE makes the exporter
 * refuse (BufferError) a non-contiguous buffer, and non-buffers raise
 * TypeError. */
static inline int
get_bytes(PyObject *obj, Py_buffer *view)
{
    return PyObject_GetBuffer(obj, view, PyBUF_SIMPLE);
}

/* A segment's checksum (at least HEADER_LEN bytes) is right, or is 0: "not
 * computed" (docs/wire.md). */
static inline int
checksum_ok(const Py_buffer *v)
{
    const unsigned char *p = (const unsigned char *)v->buf;
    return !(p[16] | p[17]) || sum_be(p, v->len) == 0xFFFFu;
}

PyDoc_STRVAR(ones_complement_sum_doc,
"ones_complement_sum(data, /)\n--\n\n"
"The RFC 1071 one's-complement sum (0..0xFFFF) of the big-endian 16-bit\n"
"words of a C-contiguous buffer, an odd final byte padded with a zero byte.\n"
"0 for an all-zero (or empty) buffer; any other input gives 1..0xFFFF.");

static PyObject *
ones_complement_sum(PyObject *Py_UNUSED(module), PyObject *data)
{
    Py_buffer view;
    uint32_t s;

    if (get_bytes(data, &view) < 0)
        return NULL;
    s = sum_be((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(s);
}

PyDoc_STRVAR(checksum_doc,
"checksum(data, /)\n--\n\n"
"The checksum value to store for data (whose checksum field is zero):\n"
"the 16-bit one's complement of ones_complement_sum(data).");

static PyObject *
checksum(PyObject *Py_UNUSED(module), PyObject *data)
{
    Py_buffer view;
    uint32_t s;

    if (get_bytes(data, &view) < 0)
        return NULL;
    s = sum_be((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(~s & 0xFFFFu);
}

PyDoc_STRVAR(checksum2_doc,
"checksum2(head, payload, /)\n--\n\n"
"checksum(head + payload) without building the concatenation. A payload\n"
"that starts at an odd offset is handled (its sum is byte-swapped, RFC 1071\n"
"section 2(B)), although segment headers are always a multiple of 4 bytes.");

static PyObject *
checksum2(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer head, payload;
    uint32_t s;
    uint64_t total;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "checksum2() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (get_bytes(args[0], &head) < 0)
        return NULL;
    if (get_bytes(args[1], &payload) < 0) {
        PyBuffer_Release(&head);
        return NULL;
    }
    total = sum_native((const unsigned char *)head.buf, head.len);
    s = fold16(sum_native((const unsigned char *)payload.buf, payload.len));
    if (head.len & 1)
        s = swap16(s);
    s = fold16(total + s);
#if !PY_BIG_ENDIAN
    s = swap16(s);
#endif
    PyBuffer_Release(&payload);
    PyBuffer_Release(&head);
    return PyLong_FromUnsignedLong(~s & 0xFFFFu);
}

PyDoc_STRVAR(verify_doc,
"verify(data, /)\n--\n\n"
"True if data (checksum field included) carries a valid checksum, that is\n"
"its one's-complement sum is 0xFFFF.");

static PyObject *
verify(PyObject *Py_UNUSED(module), PyObject *data)
{
    Py_buffer view;
    uint32_t s;

    if (get_bytes(data, &view) < 0)
        return NULL;
    s = sum_be((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(s == 0xFFFFu);
}

/* ------------------------------------------------------------------------
 * Segments (RFC 9293 section 3.1): the 20-byte header, options, data.
 */

/* The fields of rudp.wire.segment.Segment, in the order of its __init__. */
enum {
    F_SPORT, F_DPORT, F_SEQ, F_ACK, F_FLAGS, F_WND, F_PAYLOAD, F_URP,
    F_MSS, F_WSCALE, F_SACK_PERM, F_SACK, F_TS, N_FIELDS
};
static const char *const field_names[N_FIELDS] = {
    "sport", "dport", "seq", "ack", "flags", "wnd", "payload", "urp",
    "mss", "wscale", "sack_perm", "sack", "ts",
};

typedef struct {
    PyObject *segment_type;  /* the bound Segment class (NULL until bind_segment) */
    PyObject *parse_error;   /* its ParseError exception */
    PyObject *struct_error;  /* struct.error: what the Python builders raise */
    PyObject *builtin_min;   /* builtins.min, for earliest()'s general case */
    Py_ssize_t offsets[N_FIELDS];
} accel_state;

static inline accel_state *
get_state(PyObject *module)
{
    return (accel_state *)PyModule_GetState(module);
}

#define HEADER_LEN 20
#define OPT_EOL 0
#define OPT_NOP 1
#define OPT_MSS 2
#define OPT_WSCALE 3
#define OPT_SACK_PERM 4
#define OPT_SACK 5
#define OPT_TIMESTAMP 8
/* NOP, NOP, kind 8, length 10 (RFC 7323 Appendix A): the timestamps layout of
 * every segment after the SYN, 12 bytes right after the fixed header. */
#define TS_FAST_HLEN 32
#define MAX_OPTIONS 40

static inline uint32_t
load16(const unsigned char *p)
{
    return ((uint32_t)p[0] << 8) | p[1];
}

static inline uint32_t
load32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void
store16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static inline void
store32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Bind fastcall arguments to parameters like a Python def does: up to npos
 * positionally, any by keyword (those from npos on only by keyword), the first
 * nrequired required. out[] gets borrowed references, NULL where defaulted. */
static int
bind_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
          const char *const *names, Py_ssize_t npos, Py_ssize_t nparams,
          Py_ssize_t nrequired, PyObject **out)
{
    Py_ssize_t i, j, nkw;

    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional arguments (%zd given)",
                     fname, npos, nargs);
        return -1;
    }
    for (i = 0; i < nparams; i++)
        out[i] = i < nargs ? args[i] : NULL;
    nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        for (i = 0; i < nparams; i++)
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
                break;
        if (i == nparams) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
                         fname, key);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + j];
    }
    for (i = 0; i < nrequired; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* Exactly `expected` positional arguments, else TypeError. */
static int
exact_args(const char *fname, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs == expected)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", fname,
                 expected, nargs);
    return -1;
}

/* Exactly `expected` positional arguments, the first one a list, else TypeError. */
static int
list_first_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                Py_ssize_t expected)
{
    if (exact_args(fname, nargs, expected) < 0)
        return -1;
    if (PyList_Check(args[0]))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() needs a list", fname);
    return -1;
}

/* args[first], args[first + 1], ... (n of them) as Py_ssize_t, stored through
 * the n Py_ssize_t pointers that follow: integers or __index__, OverflowError
 * beyond the range. -1 with an exception set. */
static int
ssize_args(PyObject *const *args, Py_ssize_t first, int n, ...)
{
    va_list ap;
    Py_ssize_t *out, v;
    int k, rc = 0;

    va_start(ap, n);
    for (k = 0; k < n; k++) {
        out = va_arg(ap, Py_ssize_t *);
        v = PyNumber_AsSsize_t(args[first + k], PyExc_OverflowError);
        if (v == -1 && PyErr_Occurred()) {
            rc = -1;
            break;
        }
        *out = v;
    }
    va_end(ap);
    return rc;
}

/* An unsigned field as struct.pack checks it: an integer (or __index__) in
 * 0..max, else struct.error. */
static int
get_field(accel_state *st, PyObject *obj, unsigned long long max, const char *what,
          uint32_t *out)
{
    unsigned long long v;
    PyObject *index;

    if (PyLong_CheckExact(obj)) {
        Py_INCREF(obj);
        index = obj;
    }
    else {
        index = PyNumber_Index(obj);
        if (index == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError))
                return -1;
            PyErr_SetString(st->struct_error, "required argument is not an integer");
            return -1;
        }
    }
    v = PyLong_AsUnsignedLongLong(index);
    Py_DECREF(index);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        v = max + 1; /* negative, or beyond 64 bits */
        PyErr_Clear();
    }
    if (v > max) {
        PyErr_Format(st->struct_error, "'%s' format requires 0 <= number <= %llu", what, max);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static PyObject *
parse_error(accel_state *st, const char *reason)
{
    PyObject *arg = PyUnicode_FromString(reason);
    if (arg != NULL) {
        PyObject *exc = PyObject_CallOneArg(st->parse_error, arg);
        Py_DECREF(arg);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
    }
    return NULL;
}

/* Store a new reference in a slot of seg (which owns nothing there yet);
 * a NULL value (a failed allocation) leaves it empty and fails. */
static inline int
set_field(accel_state *st, PyObject *seg, int field, PyObject *value)
{
    if (value == NULL)
        return -1;
    *(PyObject **)((char *)seg + st->offsets[field]) = value;
    return 0;
}

/* (u32 at p, u32 at p + 4) as a new tuple. */
static PyObject *
pair32(const unsigned char *p)
{
    PyObject *t = PyTuple_New(2), *v;
    int k;

    if (t == NULL)
        return NULL;
    for (k = 0; k < 2; k++) {
        v = PyLong_FromUnsignedLong(load32(p + 4 * k));
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, v);
    }
    return t;
}

/* The options after the fixed header (RFC 9293 section 3.1, RFC 7323, RFC
 * 2018), exactly as rudp.wire.segment._parse_options: unknown kinds skipped by
 * their length, a known kind with a wrong length ignored, a later option of a
 * kind replacing an earlier one. Returns the reason of a malformed list, or NULL
 * (then -1 in *failed means an exception is set). */
static const char *
parse_options(accel_state *st, PyObject *seg, const unsigned char *p, Py_ssize_t end,
              int *failed)
{
    Py_ssize_t i = HEADER_LEN, j, length;
    PyObject *value, **slot;
    int field;

    *failed = 0;
    while (i < end) {
        unsigned char kind = p[i];
        if (kind == OPT_EOL)
            return NULL;
        if (kind == OPT_NOP) {
            i++;
            continue;
        }
        if (i + 1 >= end)
            return "option_truncated";
        length = p[i + 1];
        if (length < 2)
            return "option_length";
        if (i + length > end)
            return "option_overflow";
        value = NULL;
        field = -1;
        if (kind == OPT_MSS && length == 4) {
            field = F_MSS;
            value = PyLong_FromUnsignedLong(load16(p + i + 2));
        }
        else if (kind == OPT_WSCALE && length == 3) {
            field = F_WSCALE;
            value = PyLong_FromLong(p[i + 2]);
        }
        else if (kind == OPT_SACK_PERM && length == 2) {
            field = F_SACK_PERM;
            value = Py_NewRef(Py_True);
        }
        else if (kind == OPT_SACK && length >= 10 && (length - 2) % 8 == 0) {
            field = F_SACK;
            value = PyTuple_New((length - 2) / 8);
            for (j = 0; value != NULL && j < (length - 2) / 8; j++) {
                PyObject *block = pair32(p + i + 2 + 8 * j);
                if (block == NULL)
                    Py_CLEAR(value);
                else
                    PyTuple_SET_ITEM(value, j, block);
            }
        }
        else if (kind == OPT_TIMESTAMP && length == 10) {
            field = F_TS;
            value = pair32(p + i + 2);
        }
        if (field >= 0) {
            if (value == NULL) {
                *failed = -1;
                return NULL;
            }
            slot = (PyObject **)((char *)seg + st->offsets[field]);
            Py_SETREF(*slot, value);
        }
        i += length;
    }
    return NULL;
}

static const char *const parse_names[] = {"data", "check"};

PyDoc_STRVAR(parse_segment_doc,
"parse_segment(data, *, check=True)\n--\n\n"
"rudp.wire.segment.parse_segment in C: a Segment parsed from one UDP\n"
"payload (a C-contiguous buffer), or ParseError(reason). The payload is\n"
"data[hlen:], a view when data is a memoryview.");

static PyObject *
parse_segment(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    accel_state *st = get_state(module);
    PyObject *argv[2], *data, *seg = NULL, *payload;
    Py_buffer view;
    const unsigned char *p;
    const char *reason = NULL;
    Py_ssize_t n, hlen;
    int check = 1, failed;

    if (kwnames == NULL && nargs == 1) {
        data = args[0];
    }
    else {
        if (bind_args("parse_segment", args, nargs, kwnames, parse_names, 1, 2, 1, argv) < 0)
            return NULL;
        data = argv[0];
        if (argv[1] != NULL && (check = PyObject_IsTrue(argv[1])) < 0)
            return NULL;
    }
    if (st->segment_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "rudp._accel.bind_segment() was not called");
        return NULL;
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    p = (const unsigned char *)view.buf;
    n = view.len;
    if (n < HEADER_LEN) {
        reason = "short";
        goto done;
    }
    hlen = (p[12] >> 4) * 4;
    if (hlen < HEADER_LEN || hlen > n) {
        reason = "data_offset";
        goto done;
    }
    if (check && !checksum_ok(&view)) {
        reason = "checksum";
        goto done;
    }
    if (hlen < n)
        payload = PySequence_GetSlice(data, hlen, n);
    else
        payload = PyBytes_FromStringAndSize(NULL, 0);
    if (payload == NULL)
        goto done;
    seg = ((PyTypeObject *)st->segment_type)->tp_alloc((PyTypeObject *)st->segment_type, 0);
    if (seg == NULL) {
        Py_DECREF(payload);
        goto done;
    }
    set_field(st, seg, F_PAYLOAD, payload);
    if (set_field(st, seg, F_SPORT, PyLong_FromLong((long)load16(p))) < 0 ||
        set_field(st, seg, F_DPORT, PyLong_FromLong((long)load16(p + 2))) < 0 ||
        set_field(st, seg, F_SEQ, PyLong_FromUnsignedLong(load32(p + 4))) < 0 ||
        set_field(st, seg, F_ACK, PyLong_FromUnsignedLong(load32(p + 8))) < 0 ||
        set_field(st, seg, F_FLAGS, PyLong_FromLong(p[13])) < 0 ||
        set_field(st, seg, F_WND, PyLong_FromLong((long)load16(p + 14))) < 0 ||
        set_field(st, seg, F_URP, PyLong_FromLong((long)load16(p + 18))) < 0)
        goto fail;
    set_field(st, seg, F_MSS, Py_NewRef(Py_None));
    set_field(st, seg, F_WSCALE, Py_NewRef(Py_None));
    set_field(st, seg, F_SACK_PERM, Py_NewRef(Py_False));
    set_field(st, seg, F_SACK, Py_NewRef(Py_None));
    if (hlen == TS_FAST_HLEN && load32(p + HEADER_LEN) == 0x0101080Au) {
        if (set_field(st, seg, F_TS, pair32(p + 24)) < 0)
            goto fail;
        goto done;
    }
    set_field(st, seg, F_TS, Py_NewRef(Py_None));
    if (hlen > HEADER_LEN) {
        reason = parse_options(st, seg, p, hlen, &failed);
        if (failed < 0)
            goto fail;
        if (reason != NULL)
            Py_CLEAR(seg);
    }
    goto done;
fail:
    Py_CLEAR(seg);
done:
    PyBuffer_Release(&view);
    if (reason != NULL)
        return parse_error(st, reason);
    return seg;
}

/* ------------------------------------------------------------------------
 * Receive coalescing (software GRO, docs/performance.md): how many datagrams
 * from datagrams[start] carry consecutive pieces of one in-order data stream
 * that the engine may process as one segment, and their payloads joined.
 */

#define COALESCE_MAX 64
#define COALESCE_MAX_BYTES 65536 /* of data in one run, as Linux's GRO limit */

/* A segment that may be merged: valid header, flags ACK (PSH allowed: it ends
 * the run), data. Sets *hlen. */
static inline int
coalescible(const Py_buffer *v, Py_ssize_t *hlen)
{
    const unsigned char *p = (const unsigned char *)v->buf;
    Py_ssize_t h;

    if (v->len < HEADER_LEN)
        return 0;
    h = (p[12] >> 4) * 4;
    if (h < HEADER_LEN || h >= v->len || (p[13] & ~0x08) != 0x10)
        return 0;
    *hlen = h;
    return 1;
}

PyDoc_STRVAR(coalesce_doc,
"coalesce(datagrams, start, limit, /)\n--\n\n"
"rudp.wire.segment.coalesce in C: (k, payload). k >= 1 datagrams of the\n"
"sequence from start (at most limit, at most 64, at most 64 KiB of data)\n"
"are data segments of one TCP send: same ports, acknowledgment, window,\n"
"urgent field and option bytes, "
"consecutive sequence numbers, flags ACK (PSH only on the last), valid\n"
"checksums. payload is their data joined when k > 1, else None.");

static PyObject *
coalesce(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer views[COALESCE_MAX];
    PyObject *list, *out = NULL, *joined;
    Py_ssize_t start, limit, n, k = 0, i, hlen, h, total, pos;
    const unsigned char *first, *p;
    uint32_t next_seq;
    int ok;

    (void)module;
    if (exact_args("coalesce", nargs, 3) < 0 || ssize_args(args, 1, 2, &start, &limit) < 0)
        return NULL;
    /* A list or tuple as it is; any other sequence copied into a list. */
    list = PySequence_Fast(args[0], "coalesce() needs a sequence of buffers");
    if (list == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(list);
    if (start < 0 || start >= n) {
        PyErr_SetString(PyExc_IndexError, "coalesce() start out of range");
        Py_DECREF(list);
        return NULL;
    }
    if (limit > COALESCE_MAX)
        limit = COALESCE_MAX;
    if (limit > n - start)
        limit = n - start;
    if (get_bytes(PySequence_Fast_GET_ITEM(list, start), &views[0]) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    k = 1;
    first = (const unsigned char *)views[0].buf;
    if (limit < 2 || !coalescible(&views[0], &hlen) || (first[13] & 0x08))
        goto single;
    next_seq = load32(first + 4) + (uint32_t)(views[0].len - hlen);
    total = views[0].len - hlen;
    while (k < limit) {
        if (get_bytes(PySequence_Fast_GET_ITEM(list, start + k), &views[k]) < 0)
            goto fail;
        p = (const unsigned char *)views[k].buf;
        ok = coalescible(&views[k], &h) && h == hlen && load32(p + 4) == next_seq &&
             memcmp(p, first, 4) == 0 &&              /* ports */
             memcmp(p + 8, first + 8, 4) == 0 &&      /* acknowledgment */
             memcmp(p + 14, first + 14, 2) == 0 &&    /* window */
             memcmp(p + 18, first + 18, 2) == 0 &&    /* urgent pointer */
             memcmp(p + HEADER_LEN, first + HEADER_LEN, (size_t)(hlen - HEADER_LEN)) == 0 &&
             total + (views[k].len - hlen) <= COALESCE_MAX_BYTES && checksum_ok(&views[k]) &&
             (k > 1 || checksum_ok(&views[0]));
        if (!ok) {
            PyBuffer_Release(&views[k]);
            break;
        }
        next_seq += (uint32_t)(views[k].len - hlen);
        total += views[k].len - hlen;
        k++;
        if (p[13] & 0x08) /* PSH: the end of what the sender wrote */
            break;
    }
    if (k == 1)
        goto single;
    joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined != NULL) {
        pos = 0;
        for (i = 0; i < k; i++) {
            memcpy(PyBytes_AS_STRING(joined) + pos, (const char *)views[i].buf + hlen,
                   (size_t)(views[i].len - hlen));
            pos += views[i].len - hlen;
        }
        out = Py_BuildValue("(nN)", k, joined);
    }
    for (i = 0; i < k; i++)
        PyBuffer_Release(&views[i]);
    Py_DECREF(list);
    return out;
single:
    PyBuffer_Release(&views[0]);
    Py_DECREF(list);
    return Py_BuildValue("(iO)", 1, Py_None);
fail:
    for (i = 0; i < k; i++)
        PyBuffer_Release(&views[i]);
    Py_DECREF(list);
    return NULL;
}

/* Write the fixed header (checksum 0) at out; the checksum goes in last. */
static void
put_header(unsigned char *out, const uint32_t *v, uint32_t off)
{
    store16(out, v[0]);      /* source port */
    store16(out + 2, v[1]);  /* destination port */
    store32(out + 4, v[2]);  /* sequence number */
    store32(out + 8, v[3]);  /* acknowledgment number */
    out[12] = (unsigned char)off;
    out[13] = (unsigned char)v[4]; /* flags */
    store16(out + 14, v[5]); /* window */
    store16(out + 16, 0);    /* checksum */
    store16(out + 18, v[6]); /* urgent pointer */
}

/* header (hlen bytes at head) + payload as a new bytes object, with the
 * checksum computed if asked (a computed 0 is sent as 0xFFFF, docs/wire.md). */
static PyObject *
finish_segment(const unsigned char *head, Py_ssize_t hlen, const Py_buffer *payload,
               int compute_checksum)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, hlen + payload->len);
    unsigned char *buf;
    uint32_t csum;

    if (out == NULL)
        return NULL;
    buf = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(buf, head, (size_t)hlen);
    if (payload->len)
        memcpy(buf + hlen, payload->buf, (size_t)payload->len);
    if (compute_checksum) {
        csum = ~sum_be(buf, hlen + payload->len) & 0xFFFFu;
        store16(buf + 16, csum ? csum : 0xFFFFu);
    }
    return out;
}

/* The "HHIIBBHHH" fields of a header: limits and struct format letters. */
static const unsigned long long field_max[] = {0xFFFF, 0xFFFF, 0xFFFFFFFFull, 0xFFFFFFFFull,
                                               0xFF, 0xFFFF, 0xFFFF};
static const char *const field_fmt[] = {"H", "H", "I", "I", "B", "H", "H"};

static const char *const build_names[] = {
    "sport", "dport", "seq", "ack", "flags", "wnd", "payload", "options", "urp",
    "compute_checksum",
};

PyDoc_STRVAR(build_segment_doc,
"build_segment(sport, dport, seq, ack, flags, wnd, payload=b'', options=b'', urp=0,\n"
"              compute_checksum=True)\n--\n\n"
"rudp.wire.segment.build_segment in C: the segment as bytes.");

static PyObject *
build_segment(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    accel_state *st = get_state(module);
    PyObject *argv[10];
    uint32_t v[7];
    Py_buffer payload, options;
    unsigned char head[HEADER_LEN + 255 * 4];
    PyObject *out = NULL;
    Py_ssize_t off;
    int k, csum = 1;
    static const int order[] = {0, 1, 2, 3, 4, 5, 8}; /* argv index of each header field */

    if (bind_args("build_segment", args, nargs, kwnames, build_names, 10, 10, 6, argv) < 0)
        return NULL;
    for (k = 0; k < 7; k++) {
        if (k == 6 && argv[8] == NULL) {
            v[6] = 0;
            continue;
        }
        if (get_field(st, argv[order[k]], field_max[k], field_fmt[k], &v[k]) < 0)
            return NULL;
    }
    if (argv[9] != NULL && (csum = PyObject_IsTrue(argv[9])) < 0)
        return NULL;
    if (argv[7] == NULL)
        options.len = 0, options.buf = NULL, options.obj = NULL;
    else if (PyObject_GetBuffer(argv[7], &options, PyBUF_SIMPLE) < 0)
        return NULL;
    if (argv[6] == NULL)
        payload.len = 0, payload.buf = NULL, payload.obj = NULL;
    else if (PyObject_GetBuffer(argv[6], &payload, PyBUF_SIMPLE) < 0)
        goto release_options;
    off = ((HEADER_LEN + options.len) / 4) << 4;
    if (off > 0xFF) {
        PyErr_Format(st->struct_error, "'B' format requires 0 <= number <= 255");
        goto release;
    }
    put_header(head, v, (uint32_t)off);
    if (options.len)
        memcpy(head + HEADER_LEN, options.buf, (size_t)options.len);
    out = finish_segment(head, HEADER_LEN + options.len, &payload, csum);
release:
    if (payload.obj != NULL)
        PyBuffer_Release(&payload);
release_options:
    if (options.obj != NULL)
        PyBuffer_Release(&options);
    return out;
}

static const char *const build_ts_names[] = {
    "sport", "dport", "seq", "ack", "flags", "wnd", "payload", "tsval", "tsecr",
    "more_options", "compute_checksum",
};
static const int ts_order[] = {0, 1, 2, 3, 4, 5, 7, 8}; /* argv index of each field */
static const unsigned long long ts_max[] = {0xFFFF, 0xFFFF, 0xFFFFFFFFull, 0xFFFFFFFFull,
                                            0xFF, 0xFFFF, 0xFFFFFFFFull, 0xFFFFFFFFull};
static const char *const ts_fmt[] = {"H", "H", "I", "I", "B", "H", "I", "I"};

PyDoc_STRVAR(build_segment_ts_doc,
"build_segment_ts(sport, dport, seq, ack, flags, wnd, payload, tsval, tsecr,\n"
"                 more_options=b'', compute_checksum=True)\n--\n\n"
"rudp.wire.segment.build_segment_ts in C: the segment with the timestamps\n"
"option first (NOP, NOP, TS), then more_options, as bytes.");

static PyObject *
build_segment_ts(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    accel_state *st = get_state(module);
    PyObject *argv[11];
    PyObject *const *a = args;
    uint32_t v[8], hv[7];
    Py_buffer payload, more;
    unsigned char head[TS_FAST_HLEN + 255 * 4];
    PyObject *out = NULL;
    Py_ssize_t off;
    int k, csum = 1;

    if (kwnames != NULL || nargs < 9) {
        if (bind_args("build_segment_ts", args, nargs, kwnames, build_ts_names, 11, 11, 9,
                      argv) < 0)
            return NULL;
        a = argv;
        nargs = 11;
    }
    else if (nargs > 11) {
        PyErr_Format(PyExc_TypeError,
                     "build_segment_ts() takes at most 11 positional arguments (%zd given)",
                     nargs);
        return NULL;
    }
    for (k = 0; k < 8; k++)
        if (get_field(st, a[ts_order[k]], ts_max[k], ts_fmt[k], &v[k]) < 0)
            return NULL;
    if (nargs > 10 && a[10] != NULL && (csum = PyObject_IsTrue(a[10])) < 0)
        return NULL;
    more.len = 0, more.buf = NULL, more.obj = NULL;
    if (nargs > 9 && a[9] != NULL) {
        /* As the Python code's "if more_options:", a false value adds nothing. */
        k = PyObject_IsTrue(a[9]);
        if (k < 0 || (k && PyObject_GetBuffer(a[9], &more, PyBUF_SIMPLE) < 0))
            return NULL;
    }
    if (PyObject_GetBuffer(a[6], &payload, PyBUF_SIMPLE) < 0)
        goto release_more;
    off = ((TS_FAST_HLEN + more.len) / 4) << 4;
    if (off > 0xFF) {
        PyErr_Format(st->struct_error, "'B' format requires 0 <= number <= 255");
        goto release;
    }
    memcpy(hv, v, 6 * sizeof(uint32_t));
    hv[6] = 0; /* urgent pointer */
    put_header(head, hv, (uint32_t)off);
    store32(head + HEADER_LEN, 0x0101080Au);
    store32(head + HEADER_LEN + 4, v[6]);
    store32(head + HEADER_LEN + 8, v[7]);
    if (more.len)
        memcpy(head + TS_FAST_HLEN, more.buf, (size_t)more.len);
    out = finish_segment(head, TS_FAST_HLEN + more.len, &payload, csum);
release:
    PyBuffer_Release(&payload);
release_more:
    if (more.obj != NULL)
        PyBuffer_Release(&more);
    return out;
}

PyDoc_STRVAR(build_burst_doc,
"build_burst(sport, dport, seq, ack, flags, last_flags, wnd, data, offset,\n"
"            size, count, ts, compute_checksum, /)\n--\n\n"
"rudp.wire.segment.build_burst in C: count segments of size bytes each from\n"
"data[offset:], sequence numbers from seq, the last with last_flags; with\n"
"the timestamps option first when ts is a (tsval, tsecr) pair, none when\n"
"ts is None. A list of bytes.");

static PyObject *
build_burst(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    accel_state *st = get_state(module);
    static const unsigned long long maxes[] = {0xFFFF, 0xFFFF, 0xFFFFFFFFull, 0xFFFFFFFFull,
                                               0xFF, 0xFF, 0xFFFF};
    static const char *const fmts[] = {"H", "H", "I", "I", "B", "B", "H"};
    uint32_t v[7], hv[7], tsv[2];
    unsigned char head[TS_FAST_HLEN];
    Py_buffer data, piece;
    PyObject *list = NULL, *seg;
    Py_ssize_t offset, size, count, j, hlen;
    int k, csum, has_ts;

    if (exact_args("build_burst", nargs, 13) < 0)
        return NULL;
    for (k = 0; k < 7; k++)
        if (get_field(st, args[k], maxes[k], fmts[k], &v[k]) < 0)
            return NULL;
    if (ssize_args(args, 8, 3, &offset, &size, &count) < 0)
        return NULL;
    has_ts = args[11] != Py_None;
    if (has_ts) {
        if (!PyTuple_Check(args[11]) || PyTuple_GET_SIZE(args[11]) != 2) {
            PyErr_SetString(PyExc_TypeError, "build_burst() ts must be None or (tsval, tsecr)");
            return NULL;
        }
        for (k = 0; k < 2; k++)
            if (get_field(st, PyTuple_GET_ITEM(args[11], k), 0xFFFFFFFFull, "I", &tsv[k]) < 0)
                return NULL;
    }
    if ((csum = PyObject_IsTrue(args[12])) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[7], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (offset < 0 || size <= 0 || count < 0 || count > (data.len - offset) / size ||
        offset > data.len) {
        PyErr_SetString(PyExc_ValueError, "build_burst(): the segments do not fit the data");
        goto done;
    }
    hlen = has_ts ? TS_FAST_HLEN : HEADER_LEN;
    memcpy(hv, v, 4 * sizeof(uint32_t));
    hv[5] = v[6]; /* window */
    hv[6] = 0;    /* urgent pointer */
    if (has_ts) {
        store32(head + HEADER_LEN, 0x0101080Au);
        store32(head + HEADER_LEN + 4, tsv[0]);
        store32(head + HEADER_LEN + 8, tsv[1]);
    }
    list = PyList_New(count);
    if (list == NULL)
        goto done;
    piece.obj = NULL;
    piece.len = size;
    for (j = 0; j < count; j++) {
        hv[2] = v[2] + (uint32_t)((size_t)j * (size_t)size); /* mod 2**32 */
        hv[4] = j == count - 1 ? v[5] : v[4];
        put_header(head, hv, (uint32_t)((hlen / 4) << 4));
        piece.buf = (char *)data.buf + offset + j * size;
        seg = finish_segment(head, hlen, &piece, csum);
        if (seg == NULL) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, j, seg);
    }
done:
    PyBuffer_Release(&data);
    return list;
}

/* ------------------------------------------------------------------------
 * Batched socket I/O helpers (rudp.aio.sockio, rudp.aio.endpoint): the
 * per-datagram loops of grouping datagrams for one GSO send, splitting a GRO
 * receive, and finding a run of datagrams from one source.
 */

/* The length of a payload: bytes directly, any other buffer through the buffer
 * protocol. -1 with an exception set on failure. */
static inline Py_ssize_t
payload_len(PyObject *obj)
{
    Py_buffer view;
    Py_ssize_t n;

    if (PyBytes_CheckExact(obj))
        return PyBytes_GET_SIZE(obj);
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return -1;
    n = view.len;
    PyBuffer_Release(&view);
    return n;
}

/* a is b, or a == b; -1 on error. */
static inline int
same(PyObject *a, PyObject *b)
{
    return a == b ? 1 : PyObject_RichCompareBool(a, b, Py_EQ);
}

PyDoc_STRVAR(gso_group_doc,
"gso_group(items, start, limit, max_bytes, /)\n--\n\n"
"rudp.aio.sockio.py_gso_group in C: (end, total). items[start:end] are\n"
"(payload, destination, source) triples that one UDP GSO send can carry: the\n"
"same destination and source, payloads of items[start]'s size but a shorter\n"
"last one, at most limit of them and max_bytes in all. total is their size.");

/* The end of the GSO group that starts at items[start] (gso_group's rule), its
 * byte total in *total. With bytes_only, an item whose payload is not exactly
 * bytes also ends the group. -1 with an exception set on error. */
static Py_ssize_t
gso_extent(PyObject *items, Py_ssize_t start, Py_ssize_t limit, Py_ssize_t max_bytes,
           int bytes_only, Py_ssize_t *total)
{
    PyObject *first, *item, *payload, *dest, *src;
    Py_ssize_t n = PyList_GET_SIZE(items), stop, j, size, length;
    int eq;

    first = PyList_GET_ITEM(items, start);
    if (!PyTuple_Check(first) || PyTuple_GET_SIZE(first) != 3)
        goto not_items;
    if ((size = payload_len(PyTuple_GET_ITEM(first, 0))) < 0)
        return -1;
    dest = PyTuple_GET_ITEM(first, 1);
    src = PyTuple_GET_ITEM(first, 2);
    *total = size;
    j = start + 1;
    stop = limit < n - start ? start + limit : n;
    while (size > 0 && j < stop) {
        item = PyList_GET_ITEM(items, j);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3)
            goto not_items;
        payload = PyTuple_GET_ITEM(item, 0);
        if (bytes_only && !PyBytes_CheckExact(payload))
            break;
        if ((length = payload_len(payload)) < 0)
            return -1;
        if (length == 0 || length > size || *total + length > max_bytes)
            break;
        if ((eq = same(PyTuple_GET_ITEM(item, 1), dest)) <= 0) {
            if (eq < 0)
                return -1;
            break;
        }
        if ((eq = same(PyTuple_GET_ITEM(item, 2), src)) <= 0) {
            if (eq < 0)
                return -1;
            break;
        }
        *total += length;
        j++;
        if (length < size)
            break;
    }
    return j;
not_items:
    PyErr_SetString(PyExc_TypeError, "items are (payload, dest, src) tuples");
    return -1;
}

static PyObject *
gso_group(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *items;
    Py_ssize_t start, limit, max_bytes, j, total;

    (void)module;
    if (list_first_args("gso_group", args, nargs, 4) < 0)
        return NULL;
    items = args[0];
    if (ssize_args(args, 1, 3, &start, &limit, &max_bytes) < 0)
        return NULL;
    if (start < 0 || start >= PyList_GET_SIZE(items)) {
        PyErr_SetString(PyExc_IndexError, "gso_group() start out of range");
        return NULL;
    }
    if ((j = gso_extent(items, start, limit, max_bytes, 0, &total)) < 0)
        return NULL;
    return Py_BuildValue("(nn)", j, total);
}

PyDoc_STRVAR(split_gro_doc,
"split_gro(batch, view, start, end, segment, source, local, /)\n--\n\n"
"rudp.aio.sockio.py_split_gro in C: append (view[i:i + segment], source,\n"
"local) to batch for i from start to end in steps of segment (the last one\n"
"shorter); return how many.");

/* Append (view[start:end], source, local) to batch. 0, or -1 on error. */
static int
append_datagram(PyObject *batch, PyObject *view, Py_ssize_t start, Py_ssize_t end,
                PyObject *source, PyObject *local)
{
    PyObject *piece, *item;
    int rc;

    piece = PySequence_GetSlice(view, start, end);
    if (piece == NULL)
        return -1;
    item = PyTuple_Pack(3, piece, source, local);
    Py_DECREF(piece);
    if (item == NULL)
        return -1;
    rc = PyList_Append(batch, item);
    Py_DECREF(item);
    return rc;
}

/* Append the datagrams of view[start:end], each `segment` bytes (the last one
 * shorter), to batch as (piece, source, local) triples. How many, or -1. */
static Py_ssize_t
append_pieces(PyObject *batch, PyObject *view, Py_ssize_t start, Py_ssize_t end,
              Py_ssize_t segment, PyObject *source, PyObject *local)
{
    Py_ssize_t i, count = 0;

    for (i = start; i < end; i += segment) {
        if (append_datagram(batch, view, i, i + segment < end ? i + segment : end, source,
                            local) < 0)
            return -1;
        count++;
    }
    return count;
}

static PyObject *
split_gro(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, end, segment, count;

    (void)module;
    if (list_first_args("split_gro", args, nargs, 7) < 0)
        return NULL;
    if (ssize_args(args, 2, 3, &start, &end, &segment) < 0)
        return NULL;
    if (segment <= 0) {
        PyErr_SetString(PyExc_ValueError, "split_gro() segment must be positive");
        return NULL;
    }
    count = append_pieces(args[0], args[1], start, end, segment, args[5], args[6]);
    return count < 0 ? NULL : PyLong_FromSsize_t(count);
}

PyDoc_STRVAR(source_run_doc,
"source_run(batch, start, /)\n--\n\n"
"rudp.aio.endpoint.py_source_run in C: (end, payloads). batch[start:end] are\n"
"(payload, source, local) triples with batch[start]'s source and local\n"
"address; payloads is the list of their payloads.");

static PyObject *
source_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *batch, *first, *item, *payloads, *out;
    Py_ssize_t start, n, j;
    int eq;

    (void)module;
    if (list_first_args("source_run", args, nargs, 2) < 0)
        return NULL;
    batch = args[0];
    if (ssize_args(args, 1, 1, &start) < 0)
        return NULL;
    n = PyList_GET_SIZE(batch);
    if (start < 0 || start >= n) {
        PyErr_SetString(PyExc_IndexError, "source_run() start out of range");
        return NULL;
    }
    payloads = PyList_New(0);
    if (payloads == NULL)
        return NULL;
    first = PyList_GET_ITEM(batch, start);
    for (j = start; j < n; j++) {
        item = PyList_GET_ITEM(batch, j);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "source_run() items are (payload, src, local) tuples");
            goto fail;
        }
        if (j > start) {
            if ((eq = same(PyTuple_GET_ITEM(item, 1), PyTuple_GET_ITEM(first, 1))) < 0)
                goto fail;
            if (eq && (eq = same(PyTuple_GET_ITEM(item, 2), PyTuple_GET_ITEM(first, 2))) < 0)
                goto fail;
            if (!eq)
                break;
        }
        if (PyList_Append(payloads, PyTuple_GET_ITEM(item, 0)) < 0)
            goto fail;
    }
    out = Py_BuildValue("(nN)", j, payloads);
    return out;
fail:
    Py_DECREF(payloads);
    return NULL;
}

PyDoc_STRVAR(bind_segment_doc,
"bind_segment(segment_class, parse_error, /)\n--\n\n"
"Tell the module the Segment class parse_segment returns (it must have a\n"
"writable __slots__ member for each field) and the ParseError it raises.");

static PyObject *
bind_segment(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    accel_state *st = get_state(module);
    PyTypeObject *cls;
    Py_ssize_t offsets[N_FIELDS];
    int k;

    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "bind_segment() takes exactly 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    if (!PyType_Check(args[0]) || !PyExceptionClass_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind_segment(segment_class, exception_class)");
        return NULL;
    }
    cls = (PyTypeObject *)args[0];
    /* From 3.12 a static built-in type's tp_dict is NULL (its dict is kept per
     * interpreter): ask for the dict, a new reference there. */
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *dict = PyType_GetDict(cls);
#else
    PyObject *dict = Py_XNewRef(cls->tp_dict);
#endif
    if (dict == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s has no __slots__", cls->tp_name);
        return NULL;
    }
    for (k = 0; k < N_FIELDS; k++) {
        PyObject *descr = PyDict_GetItemString(dict, field_names[k]); /* borrowed */
        PyMemberDef *member;
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "%s has no __slots__ member '%s'", cls->tp_name,
                         field_names[k]);
            Py_DECREF(dict);
            return NULL;
        }
        member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != Py_T_OBJECT_EX || (member->flags & Py_READONLY) ||
            member->offset < (Py_ssize_t)sizeof(PyObject) ||
            member->offset + (Py_ssize_t)sizeof(PyObject *) > cls->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a plain writable slot", cls->tp_name,
                         field_names[k]);
            Py_DECREF(dict);
            return NULL;
        }
        offsets[k] = member->offset;
    }
    Py_DECREF(dict);
    memcpy(st->offsets, offsets, sizeof(offsets));
    Py_XSETREF(st->segment_type, Py_NewRef(args[0]));
    Py_XSETREF(st->parse_error, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

#ifdef __linux__
/* ------------------------------------------------------------------------
 * Batched system calls (Linux): sendmmsg and recvmmsg for rudp.aio.sockio.
 *
 * send_batch hands a list of (payload, destination, source) items to the
 * kernel as up to SB_MSGS messages per sendmmsg(2): a message is one datagram,
 * or, with GSO, a group of datagrams for one UDP_SEGMENT send (grouped exactly
 * as gso_group does). recv_batch reads up to its slot count of messages per
 * recvmmsg(2), each into its own RECV window of the arena, and appends
 * (payload view, source address, local address) triples to the batch as the
 * Python reader does. Errors are not raised: they are returned (errno), and
 * the caller handles the message concerned on its Python path, which keeps
 * one place for error semantics (retries, the error queue, GSO fallbacks).
 * Neither function releases the GIL: the socket is non-blocking, and the
 * payloads are borrowed from the caller's list.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, Linux 4.18 */
#endif
#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, Linux 5.0 */
#endif

#define SB_MSGS 64    /* messages per sendmmsg */
#define SB_IOVS 1024  /* datagrams per sendmmsg, over all its messages */
#define SB_CTL 128    /* control bytes per message: UDP_SEGMENT and a pktinfo */
#define RB_MSGS 64    /* messages per recvmmsg */
#define RB_CTL 128    /* control bytes per received message: UDP_GRO and a pktinfo */
#define CACHE_MAX 1024

/* The send_batch codes that are not errno values. */
#define SB_NEED_SOURCE (-1) /* items[next][2] has no entry in the cmsg cache */
#define SB_PYTHON (-2)      /* items[next] takes the Python path */

typedef union {
    char buf[SB_CTL];
    struct cmsghdr align;
} sb_control;

/* Encode a Python socket address for `family` as socket.sendto would for a
 * numeric host. 1 on success, 0 when the address is not one this function
 * handles (a name, a scoped literal, a bad port: the Python path decides),
 * -1 with an exception set. */
static int
encode_addr(PyObject *addr, int family, struct sockaddr_storage *ss, socklen_t *len)
{
    PyObject *host, *port;
    const char *h;
    long p;
    Py_ssize_t n;

    if (!PyTuple_Check(addr))
        return 0;
    n = PyTuple_GET_SIZE(addr);
    if (n < 2)
        return 0;
    host = PyTuple_GET_ITEM(addr, 0);
    port = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_Check(host) || !PyLong_CheckExact(port))
        return 0;
    p = PyLong_AsLong(port);
    if (p == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (p < 0 || p > 0xFFFF)
        return 0;
    h = PyUnicode_AsUTF8(host);
    if (h == NULL)
        return -1;
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        if (n != 2 || inet_pton(AF_INET, h, &sin->sin_addr) != 1)
            return 0;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p);
        *len = sizeof(*sin);
        return 1;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        unsigned long flowinfo = 0, scope = 0;
        if (n != 2 && n != 4)
            return 0;
        if (n == 4) {
            if (!PyLong_CheckExact(PyTuple_GET_ITEM(addr, 2)) ||
                !PyLong_CheckExact(PyTuple_GET_ITEM(addr, 3)))
                return 0;
            flowinfo = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 2));
            scope = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 3));
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            if (flowinfo > 0xFFFFF || scope > 0xFFFFFFFFul)
                return 0; /* socket.sendto raises: let it */
        }
        if (inet_pton(AF_INET6, h, &sin6->sin6_addr) != 1)
            return 0;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)p);
        sin6->sin6_flowinfo = htonl((uint32_t)flowinfo);
        sin6->sin6_scope_id = (uint32_t)scope;
        *len = sizeof(*sin6);
        return 1;
    }
    return 0;
}

/* Append a control message to a message's control buffer; 0, or -1 when it
 * does not fit (not possible with the sizes used here). */
static int
add_cmsg(struct msghdr *m, int level, int type, const void *data, size_t len)
{
    struct cmsghdr *c;
    size_t used = m->msg_controllen;

    if (used + CMSG_SPACE(len) > SB_CTL)
        return -1;
    c = (struct cmsghdr *)((char *)m->msg_control + used);
    memset(c, 0, CMSG_SPACE(len));
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(c), data, len);
    m->msg_controllen = used + CMSG_SPACE(len);
    return 0;
}

PyDoc_STRVAR(send_batch_doc,
"send_batch(fd, items, start, connected, gso_limit, gso_max_bytes, sources, family, /)\n"
"--\n\n"
"Send items[start:] ((payload, destination, source) triples) with sendmmsg:\n"
"one message per datagram, or per GSO group (gso_group's rule) when\n"
"gso_limit > 1. sources maps a source address to its (level, type, data)\n"
"pktinfo control message. Destinations are ignored when connected (or None).\n"
"Returns (next, code, messages, datagrams, nbytes, gso_messages,\n"
"gso_datagrams, calls): items[start:next] were sent; code is 0 when next ==\n"
"len(items), an errno for the message that starts at items[next], -1 when\n"
"items[next]'s source is not in sources, -2 when items[next] needs the\n"
"Python path (a payload that is not bytes, an address given by name).");

static PyObject *
send_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    struct mmsghdr msgs[SB_MSGS];
    struct iovec iov[SB_IOVS];
    struct sockaddr_storage names[SB_MSGS];
    sb_control ctl[SB_MSGS];
    Py_ssize_t first[SB_MSGS], segs[SB_MSGS], sizes[SB_MSGS];
    Py_ssize_t fd, start, connected, gso_limit, max_bytes, family, n, i, j;
    Py_ssize_t nmsgs = 0, ndgrams = 0, nbytes = 0, ngso = 0, ngsodg = 0, calls = 0;
    PyObject *items, *sources, *item, *payload, *dest, *src, *prev_dest, *cm;
    int nm, niov, sent, r, code = 0;
    Py_ssize_t size, total;
    uint16_t gso_size;

    (void)module;
    if (exact_args("send_batch", nargs, 8) < 0)
        return NULL;
    items = args[1];
    sources = args[6];
    if (!PyList_Check(items) || !PyDict_Check(sources)) {
        PyErr_SetString(PyExc_TypeError, "send_batch() needs a list and a dict");
        return NULL;
    }
    if (ssize_args(args, 0, 1, &fd) < 0 || ssize_args(args, 2, 4, &start, &connected,
                                                        &gso_limit, &max_bytes) < 0 ||
        ssize_args(args, 7, 1, &family) < 0)
        return NULL;
    n = PyList_GET_SIZE(items);
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_IndexError, "send_batch() start out of range");
        return NULL;
    }
    if (gso_limit < 1 || gso_limit > SB_MSGS) {
        PyErr_SetString(PyExc_ValueError, "send_batch() gso_limit must be 1..64");
        return NULL;
    }
    i = start;
    while (i < n && code == 0) {
        nm = 0;
        niov = 0;
        prev_dest = NULL;
        /* Build up to SB_MSGS messages. */
        while (i < n && nm < SB_MSGS) {
            struct msghdr *m = &msgs[nm].msg_hdr;
            item = PyList_GET_ITEM(items, i);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
                PyErr_SetString(PyExc_TypeError,
                                "send_batch() items are (payload, dest, src) tuples");
                return NULL;
            }
            payload = PyTuple_GET_ITEM(item, 0);
            dest = PyTuple_GET_ITEM(item, 1);
            src = PyTuple_GET_ITEM(item, 2);
            if (!PyBytes_CheckExact(payload)) {
                if (nm == 0)
                    code = SB_PYTHON;
                break;
            }
            cm = NULL;
            if (src != Py_None) {
                cm = PyDict_GetItemWithError(sources, src);
                if (cm == NULL) {
                    if (PyErr_Occurred())
                        return NULL;
                    if (nm == 0)
                        code = SB_NEED_SOURCE;
                    break;
                }
                if (!PyTuple_Check(cm) || PyTuple_GET_SIZE(cm) != 3 ||
                    !PyBytes_Check(PyTuple_GET_ITEM(cm, 2))) {
                    PyErr_SetString(PyExc_TypeError,
                                    "send_batch() sources are (level, type, bytes)");
                    return NULL;
                }
            }
            memset(m, 0, sizeof(*m));
            if (!connected && dest != Py_None) {
                if (prev_dest != NULL && (dest == prev_dest)) {
                    names[nm] = names[nm - 1];
                    m->msg_namelen = msgs[nm - 1].msg_hdr.msg_namelen;
                }
                else {
                    socklen_t len = 0;
                    r = encode_addr(dest, (int)family, &names[nm], &len);
                    if (r < 0)
                        return NULL;
                    if (r == 0) {
                        if (nm == 0)
                            code = SB_PYTHON;
                        break;
                    }
                    m->msg_namelen = len;
                }
                m->msg_name = &names[nm];
                prev_dest = dest;
            }
            /* The group: gso_group's rule (bytes payloads only). */
            if (gso_limit > SB_IOVS - niov)
                break; /* a whole group may not fit: send what is built (nm > 0) */
            size = PyBytes_GET_SIZE(payload);
            if ((j = gso_extent(items, i, gso_limit, max_bytes, 1, &total)) < 0)
                return NULL;
            m->msg_iov = &iov[niov];
            m->msg_iovlen = (size_t)(j - i);
            for (Py_ssize_t k = i; k < j; k++) {
                PyObject *p = PyTuple_GET_ITEM(PyList_GET_ITEM(items, k), 0);
                iov[niov].iov_base = PyBytes_AS_STRING(p);
                iov[niov].iov_len = (size_t)PyBytes_GET_SIZE(p);
                niov++;
            }
            m->msg_control = ctl[nm].buf;
            m->msg_controllen = 0;
            if (j - i > 1) {
                gso_size = (uint16_t)size;
                add_cmsg(m, SOL_UDP, UDP_SEGMENT, &gso_size, sizeof(gso_size));
            }
            if (cm != NULL) {
                int level = (int)PyLong_AsLong(PyTuple_GET_ITEM(cm, 0));
                int type = (int)PyLong_AsLong(PyTuple_GET_ITEM(cm, 1));
                PyObject *data = PyTuple_GET_ITEM(cm, 2);
                if (PyErr_Occurred())
                    return NULL;
                if (add_cmsg(m, level, type, PyBytes_AS_STRING(data),
                             (size_t)PyBytes_GET_SIZE(data)) < 0) {
                    PyErr_SetString(PyExc_ValueError, "send_batch() source cmsg too large");
                    return NULL;
                }
            }
            if (m->msg_controllen == 0)
                m->msg_control = NULL;
            first[nm] = i;
            segs[nm] = j - i;
            sizes[nm] = total;
            nm++;
            i = j;
        }
        if (nm == 0)
            break; /* code says why */
        /* Send them. A short count means the next message failed, and Linux
         * dropped its error: the next call starts with it and meets the error
         * again (a local error, e.g. EMSGSIZE, is then in the error queue
         * twice; the caller merges the two). */
        sent = 0;
        while (sent < nm) {
            r = sendmmsg((int)fd, msgs + sent, (unsigned int)(nm - sent), 0);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                code = errno;
                break;
            }
            calls++;
            for (int k = sent; k < sent + r; k++) {
                nmsgs++;
                ndgrams += segs[k];
                nbytes += sizes[k];
                if (segs[k] > 1) {
                    ngso++;
                    ngsodg += segs[k];
                }
            }
            sent += r;
        }
        if (sent < nm)
            i = first[sent];
    }
    return Py_BuildValue("(nnnnnnnn)", i, (Py_ssize_t)code, nmsgs, ndgrams, nbytes, ngso, ngsodg,
                         calls);
}

/* A Python socket address for a received sockaddr, from the cache (keyed by its
 * bytes) or made as socket.recvfrom makes it. New reference, NULL on error. */
static PyObject *
decode_addr(PyObject *cache, const struct sockaddr_storage *ss, socklen_t len)
{
    PyObject *key, *addr;
    char host[INET6_ADDRSTRLEN];

    key = PyBytes_FromStringAndSize((const char *)ss, (Py_ssize_t)len);
    if (key == NULL)
        return NULL;
    addr = PyDict_GetItemWithError(cache, key);
    if (addr != NULL) {
        Py_DECREF(key);
        return Py_NewRef(addr);
    }
    if (PyErr_Occurred())
        goto fail;
    if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL)
            goto oserror;
        addr = Py_BuildValue("(si)", host, (int)ntohs(sin->sin_port));
    }
    else if (ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL)
            goto oserror;
        addr = Py_BuildValue("(siII)", host, (int)ntohs(sin6->sin6_port),
                             (unsigned int)ntohl(sin6->sin6_flowinfo),
                             (unsigned int)sin6->sin6_scope_id);
    }
    else {
        PyErr_Format(PyExc_ValueError, "recv_batch(): address family %d", (int)ss->ss_family);
        goto fail;
    }
    if (addr == NULL)
        goto fail;
    if (PyDict_GET_SIZE(cache) >= CACHE_MAX)
        PyDict_Clear(cache);
    if (PyDict_SetItem(cache, key, addr) < 0) {
        Py_DECREF(addr);
        goto fail;
    }
    Py_DECREF(key);
    return addr;
oserror:
    PyErr_SetFromErrno(PyExc_OSError);
fail:
    Py_DECREF(key);
    return NULL;
}

PyDoc_STRVAR(recv_batch_doc,
"recv_batch(fd, arena, window, slot, slots, budget, batch, gro, pktinfo_level,\n"
"           pktinfo_type, locals, decode_local, addresses, max_bytes, expect, /)\n--\n\n"
"Read datagrams with recvmmsg (MSG_DONTWAIT) into arena windows slot..slots-1\n"
"(each `window` bytes) and append (view, source, local) triples to batch, a\n"
"GRO message split by its segment size (when gro), until about budget\n"
"datagrams, the windows, or the socket run out. A pktinfo control message of\n"
"(pktinfo_level, pktinfo_type) gives the local address: locals[data], or\n"
"decode_local(data) (which caches it); level -1 for none. addresses caches\n"
"source addresses by their sockaddr bytes. About max_bytes are read in all: each\n"
"call asks for as many messages as fit the bytes left at `expect` bytes each\n"
"(the largest message the caller saw last), so large datagrams do not fill\n"
"megabytes of windows. Returns (datagrams, slots_used, messages, nbytes,\n"
"truncated, gro_messages, gro_datagrams, calls, errno, largest): errno is 0\n"
"at EAGAIN or a full batch, else the error the last call met.");

static PyObject *
recv_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    struct mmsghdr msgs[RB_MSGS];
    struct iovec iov[RB_MSGS];
    struct sockaddr_storage names[RB_MSGS];
    union {
        char buf[RB_CTL];
        struct cmsghdr align;
    } ctl[RB_MSGS];
    Py_buffer arena;
    PyObject *view, *batch, *locals, *decode_local, *addresses, *source, *local;
    Py_ssize_t fd, window, slot, slots, budget, gro, plevel, ptype, max_bytes, expect;
    Py_ssize_t largest = 0;
    Py_ssize_t count = 0, used = 0, nmsgs = 0, nbytes = 0, trunc = 0, ngro = 0, ngrodg = 0;
    Py_ssize_t calls = 0, vlen, base, end, segment, pieces;
    /* The last source and local address decoded, and what they were decoded from:
     * consecutive datagrams of one flow reuse them without a lookup. */
    PyObject *last_source = NULL, *last_local = NULL;
    struct sockaddr_storage last_name;
    socklen_t last_len = 0;
    unsigned char last_pkt[64];
    size_t last_pkt_len = 0;
    int r, k, code = 0;
    struct cmsghdr *c;

    (void)module;
    if (exact_args("recv_batch", nargs, 15) < 0)
        return NULL;
    view = args[1];
    batch = args[6];
    locals = args[10];
    decode_local = args[11];
    addresses = args[12];
    if (!PyMemoryView_Check(view) || !PyList_Check(batch) || !PyDict_Check(locals) ||
        !PyDict_Check(addresses)) {
        PyErr_SetString(PyExc_TypeError,
                        "recv_batch() needs a memoryview, a list and two dicts");
        return NULL;
    }
    if (ssize_args(args, 0, 1, &fd) < 0 ||
        ssize_args(args, 2, 4, &window, &slot, &slots, &budget) < 0 ||
        ssize_args(args, 7, 3, &gro, &plevel, &ptype) < 0 ||
        ssize_args(args, 13, 2, &max_bytes, &expect) < 0)
        return NULL;
    if (expect < 1)
        expect = 1;
    if (PyObject_GetBuffer(view, &arena, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (window <= 0 || slot < 0 || slots > arena.len / window) {
        PyErr_SetString(PyExc_ValueError, "recv_batch() windows do not fit the arena");
        goto error;
    }
    while (count < budget && slot < slots && nbytes < max_bytes) {
        vlen = (max_bytes - nbytes + expect - 1) / expect;
        if (vlen > slots - slot)
            vlen = slots - slot;
        if (vlen > budget - count)
            vlen = budget - count;
        if (vlen > RB_MSGS)
            vlen = RB_MSGS;
        for (k = 0; k < vlen; k++) {
            struct msghdr *m = &msgs[k].msg_hdr;
            iov[k].iov_base = (char *)arena.buf + (slot + k) * window;
            iov[k].iov_len = (size_t)window;
            memset(m, 0, sizeof(*m));
            m->msg_name = &names[k];
            m->msg_namelen = sizeof(names[k]);
            m->msg_iov = &iov[k];
            m->msg_iovlen = 1;
            m->msg_control = ctl[k].buf;
            m->msg_controllen = RB_CTL;
        }
        r = recvmmsg((int)fd, msgs, (unsigned int)vlen, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                code = errno;
            break;
        }
        calls++;
        for (k = 0; k < r; k++) {
            struct msghdr *m = &msgs[k].msg_hdr;
            Py_ssize_t len = (Py_ssize_t)msgs[k].msg_len;
            nmsgs++;
            if (len > largest)
                largest = len;
            if (m->msg_flags & MSG_TRUNC) {
                trunc++;
                continue;
            }
            segment = 0;
            local = Py_None;
            Py_INCREF(local);
            for (c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR(m, c)) {
                size_t dlen = c->cmsg_len - CMSG_LEN(0);
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && dlen >= sizeof(int)) {
                    int v;
                    memcpy(&v, CMSG_DATA(c), sizeof(v));
                    segment = v;
                }
                else if (c->cmsg_level == plevel && c->cmsg_type == ptype) {
                    if (last_local == NULL || dlen != last_pkt_len ||
                        memcmp(CMSG_DATA(c), last_pkt, dlen) != 0) {
                        PyObject *key = PyBytes_FromStringAndSize((const char *)CMSG_DATA(c),
                                                                  (Py_ssize_t)dlen);
                        PyObject *found;
                        if (key == NULL)
                            goto error_local;
                        found = PyDict_GetItemWithError(locals, key);
                        if (found != NULL)
                            Py_INCREF(found);
                        else if (!PyErr_Occurred())
                            found = PyObject_CallOneArg(decode_local, key);
                        Py_DECREF(key);
                        if (found == NULL)
                            goto error_local;
                        Py_XSETREF(last_local, found);
                        /* Longer data than the copy holds is looked up every time. */
                        last_pkt_len = dlen <= sizeof(last_pkt) ? dlen : 0;
                        memcpy(last_pkt, CMSG_DATA(c), last_pkt_len);
                    }
                    Py_SETREF(local, Py_NewRef(last_local));
                }
            }
            /* A run of datagrams from one peer shares its address object. */
            if (last_source == NULL || m->msg_namelen != last_len ||
                memcmp(&names[k], &last_name, last_len) != 0) {
                source = decode_addr(addresses, &names[k], m->msg_namelen);
                if (source == NULL)
                    goto error_local;
                Py_XSETREF(last_source, source);
                last_name = names[k];
                last_len = m->msg_namelen;
            }
            base = (slot + k) * window;
            end = base + len;
            nbytes += len;
            if (gro && segment > 0 && segment < len) {
                pieces = append_pieces(batch, view, base, end, segment, last_source, local);
                if (pieces < 0)
                    goto error_local;
                ngro++;
                ngrodg += pieces;
                count += pieces;
            }
            else {
                if (append_datagram(batch, view, base, end, last_source, local) < 0)
                    goto error_local;
                count++;
            }
            Py_DECREF(local);
        }
        slot += r;
        used += r;
        if (r < vlen)
            break; /* the socket is drained: no call to meet EAGAIN */
    }
    PyBuffer_Release(&arena);
    Py_XDECREF(last_source);
    Py_XDECREF(last_local);
    return Py_BuildValue("(nnnnnnnnnn)", count, used, nmsgs, nbytes, trunc, ngro, ngrodg, calls,
                         (Py_ssize_t)code, largest);
error_local:
    Py_DECREF(local);
error:
    PyBuffer_Release(&arena);
    Py_XDECREF(last_source);
    Py_XDECREF(last_local);
    return NULL;
}
#endif /* __linux__ */

/* ------------------------------------------------------------------------
 * Timers
 */

/* ------------------------------------------------------------------ siphash24
 * SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012):
 * the keyed 64-bit function Linux uses as RFC 6528's F for initial sequence
 * numbers (secure_tcp_seq). Two compression rounds per 8-byte word, four
 * finalisation rounds; words and the key are read little-endian. */

#define SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIP_ROUND(v0, v1, v2, v3)                                              \
    do {                                                                       \
        v0 += v1; v1 = SIP_ROTL(v1, 13); v1 ^= v0; v0 = SIP_ROTL(v0, 32);      \
        v2 += v3; v3 = SIP_ROTL(v3, 16); v3 ^= v2;                             \
        v0 += v3; v3 = SIP_ROTL(v3, 21); v3 ^= v0;                             \
        v2 += v1; v1 = SIP_ROTL(v1, 17); v1 ^= v2; v2 = SIP_ROTL(v2, 32);      \
    } while (0)

static uint64_t
load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t
siphash24_raw(const unsigned char *key, const unsigned char *m, Py_ssize_t len)
{
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    /* "somepseudorandomlygeneratedbytes" */
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    Py_ssize_t whole = len - len % 8, i;
    uint64_t w;

    for (i = 0; i < whole; i += 8) {
        w = load_le64(m + i);
        v3 ^= w;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= w;
    }
    /* The last word: the remaining bytes, and the length mod 256 in the top byte. */
    w = (uint64_t)(len & 0xFF) << 56;
    for (i = 0; i < len % 8; i++)
        w |= (uint64_t)m[whole + i] << (8 * i);
    v3 ^= w;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= w;
    v2 ^= 0xFF;
    for (i = 0; i < 4; i++)
        SIP_ROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

PyDoc_STRVAR(siphash24_doc,
"siphash24(key, data, /)\n--\n\n"
"SipHash-2-4 of data under a 16-byte key, as an int in [0, 2**64).");

static PyObject *
siphash24(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer key, data;
    uint64_t h;

    if (exact_args("siphash24", nargs, 2) < 0)
        return NULL;
    if (get_bytes(args[0], &key) < 0)
        return NULL;
    if (key.len != 16) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "siphash24: the key is 16 bytes, not %zd", key.len);
        return NULL;
    }
    if (get_bytes(args[1], &data) < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    h = siphash24_raw((const unsigned char *)key.buf, (const unsigned char *)data.buf, data.len);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return PyLong_FromUnsignedLongLong(h);
}

PyDoc_STRVAR(earliest_doc,
"earliest(deadlines, /)\n--\n\n"
"min(deadlines) for a non-empty list of floats (a connection's timers, inf\n"
"when not armed), without min()'s per-item comparison calls. Any other\n"
"input is handed to min().");

static PyObject *
earliest(PyObject *module, PyObject *deadlines)
{
    Py_ssize_t i, n;
    PyObject *best, *item;
    double d, v;

    if (!PyList_CheckExact(deadlines) || (n = PyList_GET_SIZE(deadlines)) == 0)
        goto generic;
    best = PyList_GET_ITEM(deadlines, 0);
    if (!PyFloat_CheckExact(best))
        goto generic;
    d = PyFloat_AS_DOUBLE(best);
    for (i = 1; i < n; i++) {
        item = PyList_GET_ITEM(deadlines, i);
        if (!PyFloat_CheckExact(item))
            goto generic;
        v = PyFloat_AS_DOUBLE(item);
        if (v < d) { /* as min(): the first of equal values, NaN never replaces */
            d = v;
            best = item;
        }
    }
    return Py_NewRef(best);
generic:
    return PyObject_CallOneArg(get_state(module)->builtin_min, deadlines);
}

static PyMethodDef accel_methods[] = {
    {"ones_complement_sum", (PyCFunction)ones_complement_sum, METH_O,
     ones_complement_sum_doc},
    {"checksum", (PyCFunction)checksum, METH_O, checksum_doc},
    {"checksum2", (PyCFunction)(void (*)(void))checksum2, METH_FASTCALL, checksum2_doc},
    {"verify", (PyCFunction)verify, METH_O, verify_doc},
    {"parse_segment", (PyCFunction)(void (*)(void))parse_segment,
     METH_FASTCALL | METH_KEYWORDS, parse_segment_doc},
    {"build_segment", (PyCFunction)(void (*)(void))build_segment,
     METH_FASTCALL | METH_KEYWORDS, build_segment_doc},
    {"build_segment_ts", (PyCFunction)(void (*)(void))build_segment_ts,
     METH_FASTCALL | METH_KEYWORDS, build_segment_ts_doc},
    {"build_burst", (PyCFunction)(void (*)(void))build_burst, METH_FASTCALL, build_burst_doc},
    {"bind_segment", (PyCFunction)(void (*)(void))bind_segment, METH_FASTCALL,
     bind_segment_doc},
    {"earliest", (PyCFunction)earliest, METH_O, earliest_doc},
    {"siphash24", (PyCFunction)(void (*)(void))siphash24, METH_FASTCALL, siphash24_doc},
    {"coalesce", (PyCFunction)(void (*)(void))coalesce, METH_FASTCALL, coalesce_doc},
    {"gso_group", (PyCFunction)(void (*)(void))gso_group, METH_FASTCALL, gso_group_doc},
    {"split_gro", (PyCFunction)(void (*)(void))split_gro, METH_FASTCALL, split_gro_doc},
    {"source_run", (PyCFunction)(void (*)(void))source_run, METH_FASTCALL, source_run_doc},
#ifdef __linux__
    {"send_batch", (PyCFunction)(void (*)(void))send_batch, METH_FASTCALL, send_batch_doc},
    {"recv_batch", (PyCFunction)(void (*)(void))recv_batch, METH_FASTCALL, recv_batch_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static int
accel_exec(PyObject *module)
{
    accel_state *st = get_state(module);
    PyObject *mod = PyImport_ImportModule("struct");

    if (mod == NULL)
        return -1;
    st->struct_error = PyObject_GetAttrString(mod, "error");
    Py_DECREF(mod);
    if (st->struct_error == NULL)
        return -1;
    mod = PyImport_ImportModule("builtins");
    if (mod == NULL)
        return -1;
    st->builtin_min = PyObject_GetAttrString(mod, "min");
    Py_DECREF(mod);
    if (st->builtin_min == NULL)
        return -1;
    return PyModule_AddStringConstant(module, "source_sha256", SOURCE_SHA256);
}

static int
accel_traverse(PyObject *module, visitproc visit, void *arg)
{
    accel_state *st = get_state(module);
    Py_VISIT(st->segment_type);
    Py_VISIT(st->parse_error);
    Py_VISIT(st->struct_error);
    Py_VISIT(st->builtin_min);
    return 0;
}

static int
accel_clear(PyObject *module)
{
    accel_state *st = get_state(module);
    Py_CLEAR(st->segment_type);
    Py_CLEAR(st->parse_error);
    Py_CLEAR(st->struct_error);
    Py_CLEAR(st->builtin_min);
    return 0;
}

static void
accel_free(void *module)
{
    accel_clear((PyObject *)module);
}

static PyModuleDef_Slot accel_slots[] = {
    {Py_mod_exec, (void *)accel_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef accel_module = {
    PyModuleDef_HEAD_INIT,
    MODULE_NAME,                               /* m_name */
    "Optional compiled helpers for rudp's wire format (checksum, segments).",
    sizeof(accel_state),                       /* m_size */
    accel_methods,                             /* m_methods */
    accel_slots,                               /* m_slots */
    accel_traverse,                            /* m_traverse */
    accel_clear,                               /* m_clear */
    accel_free,                                /* m_free */
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    return PyModuleDef_Init(&accel_module);
}
