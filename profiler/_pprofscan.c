/* The wire-level pass of the fast pprof reader (profiler/pprof_columns.py), in C.
 *
 * Why C: a fleet batch holds thousands of Function, Location, Line and Sample messages; reading
 * their fields from Python costs ~1 us per field, and even vectorized with numpy the walk was half
 * of the server's ingest time. Here one linear pass over the bytes fills flat integer columns.
 *
 * Contract (same as pprof_columns.read): anything unusual -- a truncated or over-long varint, a
 * wire type other than varint or length-delimited inside these messages, a repeated scalar, a
 * length past its message, a location without lines, labels interleaved with other fields --
 * returns None, and the reference decoder (the protobuf library) then decides and names the error.
 * So this file never phrases an error and never accepts what the reference would read otherwise.
 *
 * scan(raw) -> None or a tuple of bytes objects holding native-endian 64-bit integers:
 *   functions  u64[n_fn][4]   id, name, system_name, filename (0 when absent)
 *   locations  u64[n_loc][3]  id, mapping_id, address
 *   line_loc   i64[n_line]    location row of each Line, locations in order, lines in wire order
 *   lines      u64[n_line][2] function_id, line
 *   loc_ids    u64[]          Sample.location_id, all samples in order, wire order (leaf first)
 *   n_loc_ids  i64[n_smp]     how many of them each sample has
 *   values     u64[]          Sample.value, likewise
 *   n_values   i64[n_smp]
 *   label_lo   i64[n_smp]     byte span [lo, hi) of raw holding each sample's Label fields
 *   label_hi   i64[n_smp]     (0, 0 when it has none)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WT_VARINT 0
#define WT_LEN 2

/* Profile's field numbers (profile.proto). */
#define PROFILE_SAMPLE 2
#define PROFILE_LOCATION 4
#define PROFILE_FUNCTION 5

typedef struct {
    uint64_t *v;
    size_t n, cap;
} vec;

static int vec_push(vec *a, uint64_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        uint64_t *v = realloc(a->v, cap * sizeof *v);
        if (v == NULL)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* Reads one varint at *p (< end); 0 on success. The 10th byte may only carry bit 63. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    const uint8_t *q = *p;
    uint64_t x = 0;
    for (int k = 0; k < 10; k++) {
        if (q >= end)
            return -1;
        uint8_t b = *q++;
        if (k == 9 && b > 1)
            return -1;
        x |= (uint64_t)(b & 0x7F) << (7 * k);
        if (b < 0x80) {
            *p = q;
            *out = x;
            return 0;
        }
    }
    return -1;
}

/* One field header: tag and, for length-delimited fields, the payload bounds. */
typedef struct {
    uint64_t fno;
    int wt;
    uint64_t value;              /* varint value, or payload length */
    const uint8_t *start;        /* first byte of the tag */
    const uint8_t *p0, *p1;      /* payload of a length-delimited field */
} field;

/* Next field of [*p, end); 1 when read, 0 at the end, -1 when unusual. Fixed-width and group
 * wire types are unusual here: none of these messages has such fields. */
static int next_field(const uint8_t **p, const uint8_t *end, field *f) {
    if (*p >= end)
        return 0;
    uint64_t tag;
    f->start = *p;
    if (varint(p, end, &tag) || tag < 8 || tag >= ((uint64_t)1 << 32))
        return -1;
    f->fno = tag >> 3;
    f->wt = (int)(tag & 7);
    if (f->wt != WT_VARINT && f->wt != WT_LEN)
        return -1;
    if (varint(p, end, &f->value))
        return -1;
    if (f->wt == WT_LEN) {
        if (f->value > (uint64_t)(end - *p))
            return -1;
        f->p0 = *p;
        f->p1 = *p + f->value;
        *p = f->p1;
    }
    return 1;
}

/* Scalar fields 1..n of a message into out[0..n); repeats and non-varints are unusual. Other
 * fields are skipped, except that `sub` (when non-zero) is handed to on_sub. */
typedef int (*sub_fn)(void *ctx, const field *f);

static int scalars(const uint8_t *p, const uint8_t *end, uint64_t *out, int n, uint64_t sub, sub_fn on_sub,
                   void *ctx) {
    field f;
    unsigned seen = 0;
    int r;
    memset(out, 0, sizeof(uint64_t) * (size_t)n);
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.fno <= (uint64_t)n) {
            unsigned bit = 1u << f.fno;
            if (f.wt != WT_VARINT || (seen & bit))
                return -1;
            seen |= bit;
            out[f.fno - 1] = f.value;
        } else if (sub && f.fno == sub) {
            if (f.wt != WT_LEN || on_sub(ctx, &f))
                return -1;
        }
    }
    return r;
}

typedef struct {
    vec functions, locations, line_loc, lines;
    vec loc_ids, n_loc_ids, values, n_values, label_lo, label_hi;
    uint64_t loc_row, n_lines_here;
    const uint8_t *base;
} tables;

static int on_line(void *ctx, const field *f) {
    tables *t = ctx;
    uint64_t cols[2];
    if (scalars(f->p0, f->p1, cols, 2, 0, NULL, NULL))
        return -1;
    t->n_lines_here++;
    return vec_push(&t->line_loc, t->loc_row) || vec_push(&t->lines, cols[0]) || vec_push(&t->lines, cols[1]);
}

static int function_msg(tables *t, const uint8_t *p, const uint8_t *end) {
    uint64_t cols[4];
    if (scalars(p, end, cols, 4, 0, NULL, NULL))
        return -1;
    for (int i = 0; i < 4; i++)
        if (vec_push(&t->functions, cols[i]))
            return -1;
    return 0;
}

static int location_msg(tables *t, const uint8_t *p, const uint8_t *end) {
    uint64_t cols[3];
    t->n_lines_here = 0;
    if (scalars(p, end, cols, 3, 4 /* Location.line */, on_line, t) || t->n_lines_here == 0)
        return -1;
    t->loc_row++;
    for (int i = 0; i < 3; i++)
        if (vec_push(&t->locations, cols[i]))
            return -1;
    return 0;
}

/* A repeated varint field, packed or not: its values appended to out; returns how many, -1 unusual. */
static int64_t repeated(const field *f, vec *out) {
    if (f->wt == WT_VARINT)
        return vec_push(out, f->value) ? -1 : 1;
    const uint8_t *p = f->p0;
    int64_t n = 0;
    uint64_t x;
    while (p < f->p1) {
        if (varint(&p, f->p1, &x) || vec_push(out, x))
            return -1;
        n++;
    }
    return n;
}

static int sample_msg(tables *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    int64_t nloc = 0, nval = 0, k;
    const uint8_t *lo = NULL, *hi = NULL;
    while ((r = next_field(&p, end, &f)) == 1) {
        switch (f.fno) {
        case 1: /* location_id */
            if ((k = repeated(&f, &t->loc_ids)) < 0)
                return -1;
            nloc += k;
            break;
        case 2: /* value */
            if ((k = repeated(&f, &t->values)) < 0)
                return -1;
            nval += k;
            break;
        case 3: /* label: one contiguous run per sample, so its bytes can be decoded once per distinct run */
            if (f.wt != WT_LEN)
                return -1;
            if (lo == NULL)
                lo = f.start;
            else if (f.start != hi)
                return -1;
            hi = f.p1;
            break;
        default:
            break;
        }
    }
    if (r < 0)
        return -1;
    return vec_push(&t->n_loc_ids, (uint64_t)nloc) || vec_push(&t->n_values, (uint64_t)nval) ||
           vec_push(&t->label_lo, lo ? (uint64_t)(lo - t->base) : 0) ||
           vec_push(&t->label_hi, hi ? (uint64_t)(hi - t->base) : 0);
}

static int scan_profile(tables *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.wt != WT_LEN)
            continue;
        if ((f.fno == PROFILE_SAMPLE && sample_msg(t, f.p0, f.p1)) ||
            (f.fno == PROFILE_LOCATION && location_msg(t, f.p0, f.p1)) ||
            (f.fno == PROFILE_FUNCTION && function_msg(t, f.p0, f.p1)))
            return -1;
    }
    return r;
}

static PyObject *as_bytes(const vec *a) {
    return PyBytes_FromStringAndSize((const char *)a->v, (Py_ssize_t)(a->n * sizeof(uint64_t)));
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    tables t;
    memset(&t, 0, sizeof t);
    t.base = view.buf;
    int bad;
    Py_BEGIN_ALLOW_THREADS
    bad = scan_profile(&t, view.buf, (const uint8_t *)view.buf + view.len);
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    vec *cols[] = {&t.functions, &t.locations, &t.line_loc, &t.lines, &t.loc_ids,
                   &t.n_loc_ids, &t.values, &t.n_values, &t.label_lo, &t.label_hi};
    const size_t ncols = sizeof cols / sizeof cols[0];
    if (bad) {
        out = Py_NewRef(Py_None);
    } else if ((out = PyTuple_New((Py_ssize_t)ncols)) != NULL) {
        for (size_t i = 0; i < ncols; i++) {
            PyObject *b = as_bytes(cols[i]);
            if (b == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyTuple_SET_ITEM(out, (Py_ssize_t)i, b);
        }
    }
    for (size_t i = 0; i < ncols; i++)
        free(cols[i]->v);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "Flat columns of a decompressed pprof's samples, locations and functions, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pprofscan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pprofscan(void) { return PyModule_Create(&module); }
