/*
 * mailsift.classifier._hashing: the hashed feature columns, without scikit-learn.
 *
 * `columns(strings, n)` gives the column scikit-learn's FeatureHasher(n, input_type="string",
 * alternate_sign=False) puts each string at: MurmurHash3_x86_32 (seed 0) of its UTF-8 bytes
 * (bytes objects as they are), read as a signed 32-bit int h, column abs(h) % n with
 * abs(-2**31) = 2**31 (FeatureHasher's definition). The columns come back as a bytearray of
 * native int64, one per string (np.frombuffer(..., dtype=np.int64) reads it).
 *
 * Encoding is strict, as sklearn's `.encode("utf-8")`: a lone surrogate raises
 * UnicodeEncodeError; an item neither str nor bytes raises TypeError.
 *
 * The hash is Austin Appleby's public-domain MurmurHash3_x86_32, the one sklearn vendors
 * (blocks read in native byte order, as there).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static uint32_t murmurhash3_x86_32(const uint8_t *data, Py_ssize_t len, uint32_t seed) {
    const Py_ssize_t nblocks = len / 4;
    const uint32_t c1 = 0xcc9e2d51u;
    const uint32_t c2 = 0x1b873593u;
    uint32_t h1 = seed;
    for (Py_ssize_t i = 0; i < nblocks; i++) {
        uint32_t k1;
        memcpy(&k1, data + 4 * i, 4);
        k1 *= c1;
        k1 = rotl32(k1, 15);
        k1 *= c2;
        h1 ^= k1;
        h1 = rotl32(h1, 13);
        h1 = h1 * 5 + 0xe6546b64u;
    }
    const uint8_t *tail = data + 4 * nblocks;
    uint32_t k1 = 0;
    switch (len & 3) {
        case 3:
            k1 ^= (uint32_t)tail[2] << 16;
            /* fall through */
        case 2:
            k1 ^= (uint32_t)tail[1] << 8;
            /* fall through */
        case 1:
            k1 ^= tail[0];
            k1 *= c1;
            k1 = rotl32(k1, 15);
            k1 *= c2;
            h1 ^= k1;
    }
    /* the reference takes the length as an int: only its low 32 bits reach the hash */
    h1 ^= (uint32_t)len;
    return fmix32(h1);
}

static PyObject *columns(PyObject *self, PyObject *args) {
    PyObject *strings;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:columns", &strings, &n)) return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "n must be positive");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(strings, "strings must be iterable");
    if (seq == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyByteArray_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    char *buf = PyByteArray_AS_STRING(out);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = items[i];
        const char *data;
        Py_ssize_t len;
        if (PyUnicode_Check(item)) {
            data = PyUnicode_AsUTF8AndSize(item, &len); /* strict: lone surrogates raise */
            if (data == NULL) goto error;
        } else if (PyBytes_Check(item)) {
            data = PyBytes_AS_STRING(item);
            len = PyBytes_GET_SIZE(item);
        } else {
            PyErr_Format(PyExc_TypeError, "feature names must be str or bytes, not %.100s",
                         Py_TYPE(item)->tp_name);
            goto error;
        }
        int64_t h = (int32_t)murmurhash3_x86_32((const uint8_t *)data, len, 0);
        int64_t col = (h < 0 ? -h : h) % (int64_t)n;
        memcpy(buf + i * (Py_ssize_t)sizeof(int64_t), &col, sizeof col);
    }
    Py_DECREF(seq);
    return out;
error:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"columns", columns, METH_VARARGS,
     "columns(strings, n, /) -> bytearray: FeatureHasher's column (native int64) of each "
     "str / bytes in a hashed space of width n (murmurhash3_32 of the UTF-8 bytes, seed 0, "
     "abs, modulo n)"},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hashing",
                                    "FeatureHasher's columns (murmurhash3) without scikit-learn",
                                    -1, module_methods};

PyMODINIT_FUNC PyInit__hashing(void) { return PyModule_Create(&module); }
