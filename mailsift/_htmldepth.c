/*
 * mailsift._htmldepth: bound the element nesting of an HTML document in one linear pass.
 *
 * An HTML5 tree builder (lexbor, behind selectolax) walks its stack of open elements for
 * nearly every tag ("is a p element in button scope?", "is a div in scope?"), so a document
 * nested N deep costs it O(N^2): 20,000 nested <div> take it 0.7 s. `cap(html, max_depth)`
 * follows the nesting the way a tree builder would, closely enough to bound it, and when the
 * document goes deeper than max_depth it returns a copy in which every start tag that would
 * open an element beyond that depth, and every end tag that closes nothing, is replaced by
 * one space (the tree builder ignores such end tags; removing them keeps its work bounded).
 * Otherwise it returns None: a document within the bound is parsed exactly as written.
 *
 * The model, conservative where it cannot be exact (it may count deeper than the tree
 * builder, never shallower for the constructs it follows):
 * - start tags of void elements (br, img, ...) open nothing, nor do those of html, head and
 *   body (there is one of each) or their end tags close anything; raw-text elements (script,
 *   style, textarea, title, xmp, iframe, noembed, noframes) are skipped to their end tag;
 *   plaintext ends the scan; comments, doctypes and processing instructions open nothing;
 * - a start tag of an element whose end tag is optional (p, li, dd, dt, option, tr, td, th)
 *   closes the same element when it is the current one;
 * - an end tag closes the innermost open element of its name unless a scope boundary
 *   (table, td, th, caption, marquee, object, applet, template, html) is nearer, as "has an
 *   element in scope" decides; otherwise it closes nothing;
 * - formatting elements (a, b, big, code, em, font, i, nobr, s, small, strike, strong, tt, u)
 *   are counted apart and only their own end tag uncounts them: the tree builder reopens
 *   them after an enclosing element closes ("reconstruct the active formatting elements").
 * The depth is the open (non-formatting) elements plus the counted formatting elements.
 *
 * The tree builder's work for an element inside a select grows with the select's content
 * (20,000 <option> in one select: 3.8 s, flat as they are): the k-th start tag inside a
 * select counts k, and once the counts of the document pass SELECT_WORK (about 40 ms of
 * the tree builder's time: one select of 2,000 options, or 50 country lists of 280) further
 * start tags inside selects are dropped too.
 *
 * Why no library does this instead (bench/bench_native.py htmldepth, docs/experiments.md,
 * 2026-12-07): on the 4,073 HTML parts of the shared corpus (39.4 M characters) this scan
 * takes 18 us a part, and it and the three candidates below all find no part beyond the
 * bound; but none can bound a hostile document, and none gives the flattened copy.
 * - selectolax (lexbor) is the tree builder this protects: it tells the depth only once it
 *   has built the tree, at the very cost bounded here (40,000 nested lists 29 s, 40,000
 *   <div></b> 5.1 s, 20,000 options in one select 2.6 s, against 1-7 ms here); 241 us a
 *   part. Its tree is deeper than this count on 2,016 parts, by at most 15 (one cause: the
 *   tbody it adds to every table, not counted here; nested tables within the bound here
 *   can reach 4/3 of it there).
 * - lxml (libxml2's HTML parser) builds another tree than HTML5's and stops at its own
 *   depth limit: it finds every hostile shape above within the bound; 434 us a part.
 * - html.parser gives tag events this model would have to follow in Python; tokenizing
 *   alone takes 1,536 us a part (84x), and it tokenizes otherwise than HTML5.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t hash_cstr(const char *s) {
    uint64_t h = FNV_OFFSET;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= FNV_PRIME;
    }
    return h;
}

static const char *VOID_NAMES[] = {"area", "base", "basefont", "bgsound", "br", "col",
                                   "embed", "frame", "hr", "image", "img", "input", "keygen",
                                   "link", "meta", "param", "source", "track", "wbr", NULL};
static const char *RAWTEXT_NAMES[] = {"script", "style", "textarea", "title", "xmp",
                                      "iframe", "noembed", "noframes", NULL};
static const char *OPTIONAL_END_NAMES[] = {"p", "li", "dd", "dt", "option", "tr", "td", "th",
                                           NULL};
/* the tree builder never opens a second html, head or body, nor closes them on an end tag */
static const char *DOCUMENT_NAMES[] = {"html", "head", "body", NULL};
static const char *BOUNDARY_NAMES[] = {"table", "td", "th", "caption", "marquee", "object",
                                       "applet", "template", "html", NULL};
static const char *FORMATTING_NAMES[] = {"a", "b", "big", "code", "em", "font", "i", "nobr",
                                         "s", "small", "strike", "strong", "tt", "u", NULL};
#define N_FORMATTING 14

static uint64_t void_h[32], rawtext_h[16], optional_h[16], boundary_h[16], formatting_h[16],
    document_h[8];
static uint64_t plaintext_h, select_h;

#define SELECT_WORK 2000000

static void hash_list(const char **names, uint64_t *out) {
    int i = 0;
    for (; names[i]; i++) out[i] = hash_cstr(names[i]);
    out[i] = 0;
}

static int in_list(uint64_t h, const uint64_t *list) {
    for (; *list; list++)
        if (*list == h) return 1;
    return 0;
}

static int formatting_index(uint64_t h) {
    for (int i = 0; i < N_FORMATTING; i++)
        if (formatting_h[i] == h) return i;
    return -1;
}

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
} Text;

#define CH(t, i) PyUnicode_READ((t)->kind, (t)->data, (i))

static int is_alpha(Py_UCS4 c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_space(Py_UCS4 c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}
static Py_UCS4 lower(Py_UCS4 c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* the tag name starting at i (a letter): its hash, and *end set past it */
static uint64_t read_name(const Text *t, Py_ssize_t i, Py_ssize_t *end) {
    uint64_t h = FNV_OFFSET;
    while (i < t->n) {
        Py_UCS4 c = CH(t, i);
        if (is_space(c) || c == '/' || c == '>') break;
        c = lower(c);
        /* the hash of the code point's bytes, low first: ASCII names hash as hash_cstr */
        do {
            h ^= (c & 0xff);
            h *= FNV_PRIME;
            c >>= 8;
        } while (c);
        i++;
    }
    *end = i;
    return h;
}

/* the index past the '>' closing a tag whose attributes start at i (quoted values may
 * hold '>'); t->n when the tag is not closed */
static Py_ssize_t tag_end(const Text *t, Py_ssize_t i) {
    while (i < t->n) {
        Py_UCS4 c = CH(t, i);
        if (c == '>') return i + 1;
        if (c == '=') {
            i++;
            while (i < t->n && is_space(CH(t, i))) i++;
            if (i < t->n && (CH(t, i) == '"' || CH(t, i) == '\'')) {
                Py_UCS4 q = CH(t, i);
                i++;
                while (i < t->n && CH(t, i) != q) i++;
                i++;
            }
            continue;
        }
        i++;
    }
    return t->n;
}

/* the index of the next occurrence of the ASCII string s (case-insensitive) from i, or
 * t->n */
static Py_ssize_t find_ci(const Text *t, Py_ssize_t i, const char *s, Py_ssize_t len) {
    for (; i + len <= t->n; i++) {
        Py_ssize_t k = 0;
        while (k < len && lower(CH(t, i + k)) == (Py_UCS4)s[k]) k++;
        if (k == len) return i;
    }
    return t->n;
}

/* the index past the end tag "</name" of the raw-text element opened before i */
static Py_ssize_t skip_rawtext(const Text *t, Py_ssize_t i, uint64_t name) {
    while (i < t->n) {
        Py_ssize_t at = find_ci(t, i, "</", 2);
        if (at >= t->n) return t->n;
        if (at + 2 < t->n && is_alpha(CH(t, at + 2))) {
            Py_ssize_t end;
            if (read_name(t, at + 2, &end) == name) return tag_end(t, end);
        }
        i = at + 2;
    }
    return t->n;
}

typedef struct {
    Py_ssize_t *v;
    Py_ssize_t len, cap;
} Spans;

static int spans_add(Spans *s, Py_ssize_t a, Py_ssize_t b) {
    if (s->len + 2 > s->cap) {
        Py_ssize_t cap = s->cap ? s->cap * 2 : 256;
        Py_ssize_t *v = realloc(s->v, (size_t)cap * sizeof(Py_ssize_t));
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->len++] = a;
    s->v[s->len++] = b;
    return 0;
}

static PyObject *cap(PyObject *self, PyObject *args) {
    PyObject *html;
    Py_ssize_t max_depth;
    if (!PyArg_ParseTuple(args, "Un:cap", &html, &max_depth)) return NULL;
    if (max_depth < 1) {
        PyErr_SetString(PyExc_ValueError, "max_depth must be at least 1");
        return NULL;
    }
    Text t = {PyUnicode_KIND(html), PyUnicode_DATA(html), PyUnicode_GET_LENGTH(html)};
    uint64_t *stack = malloc((size_t)(max_depth + 1) * sizeof(uint64_t));
    if (!stack) return PyErr_NoMemory();
    Py_ssize_t depth = 0;          /* open non-formatting elements (the stack) */
    Py_ssize_t fmt[N_FORMATTING] = {0};
    Py_ssize_t fmt_total = 0;
    Spans drops = {NULL, 0, 0}; /* start tags beyond the bound and end tags closing nothing */
    int over = 0;                /* a start tag went beyond the bound */
    Py_ssize_t select_at = -1;   /* the stack index of the outermost open select, or -1 */
    Py_ssize_t in_select = 0;    /* start tags met inside it */
    Py_ssize_t select_work = 0;  /* the sum of in_select over the start tags in selects */
    Py_ssize_t i = 0;
    while (i < t.n) {
        Py_ssize_t lt = PyUnicode_FindChar(html, '<', i, t.n, 1); /* memchr-fast */
        if (lt == -2) goto fail_scan;
        if (lt < 0 || lt + 1 >= t.n) break;
        Py_UCS4 c = CH(&t, lt + 1);
        if (c == '!') {
            if (lt + 3 < t.n && CH(&t, lt + 2) == '-' && CH(&t, lt + 3) == '-') {
                Py_ssize_t e = find_ci(&t, lt + 4, "-->", 3);
                i = e >= t.n ? t.n : e + 3;
            } else {
                i = tag_end(&t, lt + 2);
            }
            continue;
        }
        if (c == '?') {
            i = tag_end(&t, lt + 2);
            continue;
        }
        if (c == '/') {
            if (lt + 2 >= t.n || !is_alpha(CH(&t, lt + 2))) {
                i = tag_end(&t, lt + 2);
                continue;
            }
            Py_ssize_t name_end;
            uint64_t h = read_name(&t, lt + 2, &name_end);
            Py_ssize_t end = tag_end(&t, name_end);
            int closed = 0;
            int f = formatting_index(h);
            if (in_list(h, document_h)) {
                closed = 1; /* ignored by the tree builder, kept as written */
            } else if (f >= 0) {
                if (fmt[f] > 0) {
                    fmt[f]--;
                    fmt_total--;
                    closed = 1;
                }
            } else {
                for (Py_ssize_t k = depth - 1; k >= 0; k--) {
                    if (stack[k] == h) {
                        depth = k;
                        if (select_at >= depth) select_at = -1;
                        closed = 1;
                        break;
                    }
                    if (in_list(stack[k], boundary_h)) break;
                }
            }
            if (!closed && spans_add(&drops, lt, end) < 0) goto nomem;
            i = end;
            continue;
        }
        if (!is_alpha(c)) {
            i = lt + 1;
            continue;
        }
        Py_ssize_t name_end;
        uint64_t h = read_name(&t, lt + 1, &name_end);
        Py_ssize_t end = tag_end(&t, name_end);
        i = end;
        if (h == plaintext_h) break;
        if (in_list(h, void_h) || in_list(h, document_h)) continue;
        if (in_list(h, rawtext_h)) {
            i = skip_rawtext(&t, end, h);
            continue;
        }
        if (depth > 0 && stack[depth - 1] == h && in_list(h, optional_h)) depth--;
        if (select_at >= 0) select_work += ++in_select;
        if (depth + fmt_total >= max_depth || select_work > SELECT_WORK) {
            over = 1;
            if (spans_add(&drops, lt, end) < 0) goto nomem;
            continue;
        }
        int f = formatting_index(h);
        if (f >= 0) {
            fmt[f]++;
            fmt_total++;
        } else {
            if (h == select_h && select_at < 0) {
                select_at = depth;
                in_select = 0;
            }
            stack[depth++] = h;
        }
    }
    free(stack);
    if (!over) {
        free(drops.v);
        Py_RETURN_NONE;
    }
    /* the copy: each dropped tag becomes one space */
    Py_ssize_t out_len = t.n;
    for (Py_ssize_t k = 0; k < drops.len; k += 2) out_len -= drops.v[k + 1] - drops.v[k] - 1;
    PyObject *out = PyUnicode_New(out_len, PyUnicode_MAX_CHAR_VALUE(html));
    if (!out) {
        free(drops.v);
        return NULL;
    }
    Py_ssize_t src = 0, dst = 0;
    for (Py_ssize_t k = 0; k < drops.len; k += 2) {
        Py_ssize_t a = drops.v[k], b = drops.v[k + 1];
        if (a > src && PyUnicode_CopyCharacters(out, dst, html, src, a - src) < 0) goto fail;
        dst += a - src;
        PyUnicode_WRITE(PyUnicode_KIND(out), PyUnicode_DATA(out), dst, ' ');
        dst++;
        src = b;
    }
    if (t.n > src && PyUnicode_CopyCharacters(out, dst, html, src, t.n - src) < 0) goto fail;
    free(drops.v);
    return out;
fail:
    free(drops.v);
    Py_DECREF(out);
    return NULL;
nomem:
    free(stack);
    free(drops.v);
    return PyErr_NoMemory();
fail_scan:
    free(stack);
    free(drops.v);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"cap", cap, METH_VARARGS,
     "cap(html, max_depth, /) -> str | None: html with the start tags that would nest "
     "elements deeper than max_depth or fill selects past a fixed amount of the tree "
     "builder's work (and the end tags closing nothing) replaced by a space, or None when the "
     "document stays within those bounds"},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_htmldepth",
                                    "HTML element nesting bounded in one linear pass", -1,
                                    module_methods};

PyMODINIT_FUNC PyInit__htmldepth(void) {
    hash_list(VOID_NAMES, void_h);
    hash_list(RAWTEXT_NAMES, rawtext_h);
    hash_list(OPTIONAL_END_NAMES, optional_h);
    hash_list(BOUNDARY_NAMES, boundary_h);
    hash_list(DOCUMENT_NAMES, document_h);
    hash_list(FORMATTING_NAMES, formatting_h);
    plaintext_h = hash_cstr("plaintext");
    select_h = hash_cstr("select");
    return PyModule_Create(&module);
}
