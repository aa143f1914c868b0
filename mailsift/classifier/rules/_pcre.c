/*
 * mailsift.classifier.rules._pcre: PCRE2 (JIT) matching for the rule engine.
 *
 * SpamAssassin's rules are Perl regular expressions. Hyperscan finds which rules can hit a
 * text; what it cannot decide exactly (prefilter patterns, `multiple` counts, patterns it
 * refuses) is decided here by PCRE2's JIT, Perl's semantics, several times faster than
 * Python's `re` on these patterns and with a bounded amount of backtracking.
 *
 * A Regex holds one compiled, JIT-compiled pattern (bytes, no UTF, no UCP: `\w`, `\s`, /i
 * are ASCII-only, as in the engine's `re` patterns). Its methods answer
 * `search(data, pos)` (bool) and `count(data, pos, limit)` (non-overlapping matches, up to
 * `limit`, with Python's finditer rules for empty matches).
 *
 * Matching keeps the GIL: one match data block and one JIT stack serve every call, so no
 * two calls ever run at once. A match that exceeds PCRE2's match or depth limit raises
 * LimitError (the caller then decides with `re`; nothing is silently answered "no").
 *
 * Why not the `pcre2` PyPI bindings (0.7.1, PCRE2 10.47; bench/bench_native.py pcre,
 * docs/experiments.md, 2026-12-07): on the whole shared corpus (9,471 messages) they give
 * the same answers on all 3,713,743 searches and counts of the 315 rules the engine decides
 * here, and the same per-rule values on every message, but are too slow: the rule engine
 * takes 2.89 ms a message with them against 2.20 ms with this module (+31%; +14% on the
 * scoring path), their calls 4.06 us against 2.67 us (a Python wrapper, a match-data
 * allocation and a Match object per call, a generator for counts). They also set no match
 * limit of their own nor a JIT stack, and offer no way to.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MATCH_LIMIT 10000000u /* PCRE2's default, stated */
#define JIT_STACK_START (32 * 1024)
#define JIT_STACK_MAX (8 * 1024 * 1024)

static PyObject *RegexError;
static PyObject *LimitError;
static pcre2_match_data *g_md;      /* one ovector pair: only the span is read */
static pcre2_match_context *g_mctx; /* limits and the JIT stack */
static pcre2_jit_stack *g_jit_stack;
static pcre2_compile_context *g_cctx; /* newline LF, \R any: fixed, whatever the build */

typedef struct {
    PyObject_HEAD pcre2_code *code;
    PyObject *pattern;
    uint32_t flags;
    int jit;
} RegexObject;

static void Regex_dealloc(RegexObject *self) {
    if (self->code != NULL) pcre2_code_free(self->code);
    Py_XDECREF(self->pattern);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Regex_init(RegexObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"pattern", "caseless", "multiline", "dotall", NULL};
    PyObject *pattern;
    int caseless = 0, multiline = 0, dotall = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "S|ppp", kwlist, &pattern, &caseless,
                                     &multiline, &dotall))
        return -1;
    uint32_t opts = (caseless ? PCRE2_CASELESS : 0) | (multiline ? PCRE2_MULTILINE : 0) |
                    (dotall ? PCRE2_DOTALL : 0);
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)PyBytes_AS_STRING(pattern), (PCRE2_SIZE)PyBytes_GET_SIZE(pattern),
                      opts, &errcode, &erroff, g_cctx);
    if (code == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        PyErr_Format(RegexError, "%s at offset %zu", (const char *)msg, (size_t)erroff);
        return -1;
    }
    if (self->code != NULL) pcre2_code_free(self->code);
    self->code = code;
    /* JIT is an optimisation: without it (no JIT on this CPU) the interpreter answers */
    self->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    Py_XSETREF(self->pattern, Py_NewRef(pattern));
    self->flags = opts;
    return 0;
}

/* one pcre2_match: 1 matched (span in g_md), 0 no match, -1 exception set */
static int match_at(RegexObject *self, const char *data, Py_ssize_t len, Py_ssize_t pos,
                    uint32_t options) {
    int rc = pcre2_match(self->code, (PCRE2_SPTR)data, (PCRE2_SIZE)len, (PCRE2_SIZE)pos, options,
                         g_md, g_mctx);
    if (rc >= 0) return 1; /* 0: the ovector is too small for the groups, still a match */
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
        rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT ||
        rc == PCRE2_ERROR_NOMEMORY) {
        PyErr_SetString(LimitError, "pcre2 match limit reached");
        return -1;
    }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    PyErr_Format(RegexError, "pcre2 match error: %s", (const char *)msg);
    return -1;
}

static int parse_data(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                      const char **data, Py_ssize_t *len, Py_ssize_t *pos) {
    if (nargs < 1 || nargs > want) {
        PyErr_Format(PyExc_TypeError, "expected 1 to %zd arguments", want);
        return -1;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return -1;
    }
    *data = PyBytes_AS_STRING(args[0]);
    *len = PyBytes_GET_SIZE(args[0]);
    *pos = 0;
    if (nargs >= 2) {
        *pos = PyLong_AsSsize_t(args[1]);
        if (*pos == -1 && PyErr_Occurred()) return -1;
        if (*pos < 0) *pos = 0;
        if (*pos > *len) *pos = *len;
    }
    return 0;
}

static PyObject *Regex_search(RegexObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *data;
    Py_ssize_t len, pos;
    if (parse_data(args, nargs, 2, &data, &len, &pos) < 0) return NULL;
    int m = match_at(self, data, len, pos, 0);
    if (m < 0) return NULL;
    return PyBool_FromLong(m);
}

static PyObject *Regex_count(RegexObject *self, PyObject *const *args, Py_ssize_t nargs) {
    const char *data;
    Py_ssize_t len, pos, limit = PY_SSIZE_T_MAX;
    if (parse_data(args, nargs, 3, &data, &len, &pos) < 0) return NULL;
    if (nargs == 3) {
        limit = PyLong_AsSsize_t(args[2]);
        if (limit == -1 && PyErr_Occurred()) return NULL;
    }
    Py_ssize_t n = 0;
    uint32_t options = 0;
    /* Python's finditer: after an empty match at p, the next match may not be empty at p */
    while (n < limit && pos <= len) {
        int m = match_at(self, data, len, pos, options);
        if (m < 0) return NULL;
        if (m == 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(g_md);
        n++;
        if (ov[0] == ov[1]) {
            if ((Py_ssize_t)ov[1] >= len) break;
            options = PCRE2_NOTEMPTY_ATSTART;
        } else {
            options = 0;
        }
        pos = (Py_ssize_t)ov[1];
    }
    return PyLong_FromSsize_t(n);
}

static PyObject *Regex_reduce(RegexObject *self, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("(O(Oiii))", Py_TYPE(self), self->pattern,
                         (self->flags & PCRE2_CASELESS) != 0, (self->flags & PCRE2_MULTILINE) != 0,
                         (self->flags & PCRE2_DOTALL) != 0);
}

static PyObject *Regex_get_pattern(RegexObject *self, void *closure) {
    return Py_NewRef(self->pattern ? self->pattern : Py_None);
}

static PyObject *Regex_get_jit(RegexObject *self, void *closure) {
    return PyBool_FromLong(self->jit);
}

static PyMethodDef Regex_methods[] = {
    {"search", (PyCFunction)(void (*)(void))Regex_search, METH_FASTCALL,
     "search(data, pos=0) -> bool: a match starts at or after pos"},
    {"count", (PyCFunction)(void (*)(void))Regex_count, METH_FASTCALL,
     "count(data, pos=0, limit=inf) -> int: non-overlapping matches from pos, up to limit"},
    {"__reduce__", (PyCFunction)Regex_reduce, METH_NOARGS, NULL},
    {NULL}};

static PyGetSetDef Regex_getset[] = {
    {"pattern", (getter)Regex_get_pattern, NULL, "the pattern (bytes)", NULL},
    {"jit", (getter)Regex_get_jit, NULL, "True when JIT-compiled", NULL},
    {NULL}};

static PyTypeObject RegexType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mailsift.classifier.rules._pcre.Regex",
    .tp_basicsize = sizeof(RegexObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Regex(pattern: bytes, caseless=False, multiline=False, dotall=False)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Regex_init,
    .tp_dealloc = (destructor)Regex_dealloc,
    .tp_methods = Regex_methods,
    .tp_getset = Regex_getset,
};

static PyObject *version(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    char buf[64];
    if (pcre2_config(PCRE2_CONFIG_VERSION, buf) < 0) Py_RETURN_NONE;
    return PyUnicode_FromString(buf);
}

static PyObject *set_match_limit(PyObject *self, PyObject *arg) {
    unsigned long limit = PyLong_AsUnsignedLong(arg);
    if (limit == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    if (limit == 0 || limit > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "match limit must be 1 .. 2**32-1");
        return NULL;
    }
    pcre2_set_match_limit(g_mctx, (uint32_t)limit);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"version", version, METH_NOARGS, "the PCRE2 library's version"},
    {"set_match_limit", set_match_limit, METH_O,
     "set_match_limit(n): backtracking steps one match may take before LimitError"},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pcre",
                                    "PCRE2 (JIT) matching for the rule engine", -1,
                                    module_methods};

PyMODINIT_FUNC PyInit__pcre(void) {
    if (PyType_Ready(&RegexType) < 0) return NULL;
    g_md = pcre2_match_data_create(1, NULL);
    g_mctx = pcre2_match_context_create(NULL);
    g_cctx = pcre2_compile_context_create(NULL);
    g_jit_stack = pcre2_jit_stack_create(JIT_STACK_START, JIT_STACK_MAX, NULL);
    if (g_md == NULL || g_mctx == NULL || g_cctx == NULL || g_jit_stack == NULL)
        return PyErr_NoMemory();
    pcre2_set_newline(g_cctx, PCRE2_NEWLINE_LF);
    pcre2_set_bsr(g_cctx, PCRE2_BSR_UNICODE);
    pcre2_set_match_limit(g_mctx, MATCH_LIMIT);
    pcre2_jit_stack_assign(g_mctx, NULL, g_jit_stack);
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    RegexError = PyErr_NewException("mailsift.classifier.rules._pcre.RegexError",
                                    PyExc_ValueError, NULL);
    LimitError = PyErr_NewException("mailsift.classifier.rules._pcre.LimitError",
                                    PyExc_RuntimeError, NULL);
    if (RegexError == NULL || LimitError == NULL ||
        PyModule_AddObjectRef(m, "RegexError", RegexError) < 0 ||
        PyModule_AddObjectRef(m, "LimitError", LimitError) < 0 ||
        PyModule_AddIntConstant(m, "MATCH_LIMIT", MATCH_LIMIT) < 0 ||
        PyModule_AddObjectRef(m, "Regex", (PyObject *)&RegexType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
