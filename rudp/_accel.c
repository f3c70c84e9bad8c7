/*
 * rudp._accel: optional compiled helpers for the wire hot path.
 *
 * Today: the segment checksum (docs/wire.md), the RFC 1071 one's-complement
 * sum of big-endian 16-bit words with an odd final byte padded by a zero byte.
 * rudp.wire.checksum falls back to its pure-Python functions when this module
 * is absent (or RUDP_PURE_PYTHON=1), and both must return identical values for
 * every input; tests/test_accel.py compares them.
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
 * The module has no state (m_size 0) and holds no global objects, so it is
 * safe with sub-interpreters and without the GIL.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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

static PyMethodDef accel_methods[] = {
    {"ones_complement_sum", (PyCFunction)ones_complement_sum, METH_O,
     ones_complement_sum_doc},
    {"checksum", (PyCFunction)checksum, METH_O, checksum_doc},
    {"checksum2", (PyCFunction)(void (*)(void))checksum2, METH_FASTCALL, checksum2_doc},
    {"verify", (PyCFunction)verify, METH_O, verify_doc},
    {NULL, NULL, 0, NULL},
};

static int
accel_exec(PyObject *module)
{
    return PyModule_AddStringConstant(module, "source_sha256", SOURCE_SHA256);
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
    "Optional compiled helpers for rudp's wire format (segment checksum).",
    0,                                         /* m_size: no module state */
    accel_methods,                             /* m_methods */
    accel_slots,                               /* m_slots */
    NULL,                                      /* m_traverse */
    NULL,                                      /* m_clear */
    NULL,                                      /* m_free */
};

PyMODINIT_FUNC
PyInit__accel(void)
{
    return PyModuleDef_Init(&accel_module);
}
