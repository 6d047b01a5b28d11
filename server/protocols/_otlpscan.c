/* The wire-level pass of the OTLP profiles reader (server/protocols/otlp_columns.py), in C.
 *
 * Why C: a fleet request holds hundreds of Location, Line, Stack and Sample messages; reading
 * their fields through the generated classes costs ~1 us per message and per field, which made
 * OTLP ingest cost twice the native pprof path. One linear pass over the bytes fills flat columns.
 *
 * Contract (same as profiler/_pprofscan.c): anything unusual -- a truncated or over-long varint, a
 * group wire type, a scalar repeated or sent with another wire type, a length past its message,
 * a second `dictionary` -- returns None, and the columns are then read through the generated
 * classes (otlp_columns.from_messages), which are the decoder of record. The request has already
 * been parsed by them whole, so this pass only reads what they accepted.
 *
 * scan(raw) -> None or a tuple of bytes objects holding native-endian 64-bit integers, in the
 * order of otlp_columns.COLUMNS (int32 fields sign-extended as the generated classes read them):
 *   loc_mapping, loc_address, loc_nlines, line_function, line_line, loc_nattrs, loc_attrs,
 *   fn_name, fn_filename, stack_len, stack_locations,
 *   smp_profile (ordinal of its Profile, request order), smp_stack, smp_nvalues, smp_values,
 *   smp_nstamps, smp_nattrs, smp_attrs
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5

typedef struct {
    uint64_t *v;
    size_t n, cap;
} vec;

static int push(vec *a, uint64_t x) {
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

typedef struct {
    uint64_t fno;
    int wt;
    uint64_t value;         /* varint value, or payload length */
    const uint8_t *p0, *p1; /* payload of a length-delimited or fixed-width field */
} field;

/* Next field of [*p, end); 1 when read, 0 at the end, -1 when unusual (groups, bad lengths). */
static int next_field(const uint8_t **p, const uint8_t *end, field *f) {
    if (*p >= end)
        return 0;
    uint64_t tag;
    if (varint(p, end, &tag) || tag < 8 || tag >= ((uint64_t)1 << 32))
        return -1;
    f->fno = tag >> 3;
    f->wt = (int)(tag & 7);
    size_t width;
    switch (f->wt) {
    case WT_VARINT:
        return varint(p, end, &f->value) ? -1 : 1;
    case WT_LEN:
        if (varint(p, end, &f->value) || f->value > (uint64_t)(end - *p))
            return -1;
        width = (size_t)f->value;
        break;
    case WT_I64:
        width = 8;
        break;
    case WT_I32:
        width = 4;
        break;
    default:
        return -1;
    }
    if (width > (size_t)(end - *p))
        return -1;
    f->p0 = *p;
    f->p1 = *p + width;
    *p = f->p1;
    return 1;
}

static uint64_t int32_of(uint64_t v) { return (uint64_t)(int64_t)(int32_t)(uint32_t)v; }

/* A repeated varint field, packed or not, appended to out (int32 sign-extended when `i32`);
 * adds how many to *n. */
static int repeated(const field *f, vec *out, int i32, uint64_t *n) {
    if (f->wt == WT_VARINT) {
        (*n)++;
        return push(out, i32 ? int32_of(f->value) : f->value);
    }
    if (f->wt != WT_LEN)
        return -1;
    const uint8_t *p = f->p0;
    uint64_t x;
    while (p < f->p1) {
        if (varint(&p, f->p1, &x) || push(out, i32 ? int32_of(x) : x))
            return -1;
        (*n)++;
    }
    return 0;
}

/* A singular varint field: a second occurrence or another wire type is unusual. */
static int scalar(const field *f, unsigned *seen, uint64_t *out, int i32) {
    unsigned bit = 1u << f->fno;
    if (f->wt != WT_VARINT || (*seen & bit))
        return -1;
    *seen |= bit;
    *out = i32 ? int32_of(f->value) : f->value;
    return 0;
}

enum { LOC_MAPPING, LOC_ADDRESS, LOC_NLINES, LINE_FUNCTION, LINE_LINE, LOC_NATTRS, LOC_ATTRS, FN_NAME,
       FN_FILENAME, STACK_LEN, STACK_LOCATIONS, SMP_PROFILE, SMP_STACK, SMP_NVALUES, SMP_VALUES, SMP_NSTAMPS,
       SMP_NATTRS, SMP_ATTRS, NCOLS };

typedef struct {
    vec c[NCOLS];
    uint64_t profile; /* ordinal of the Profile being read */
    int dictionaries;
} cols;

static int line_msg(cols *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    unsigned seen = 0;
    uint64_t fn = 0, line = 0, ignored;
    while ((r = next_field(&p, end, &f)) == 1) {
        if ((f.fno == 1 && scalar(&f, &seen, &fn, 1)) || (f.fno == 2 && scalar(&f, &seen, &line, 0)) ||
            (f.fno == 3 && scalar(&f, &seen, &ignored, 0)))
            return -1;
    }
    return r < 0 || push(&t->c[LINE_FUNCTION], fn) || push(&t->c[LINE_LINE], line) ? -1 : 0;
}

static int location_msg(cols *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    unsigned seen = 0;
    uint64_t mapping = 0, address = 0, nlines = 0, nattrs = 0;
    while ((r = next_field(&p, end, &f)) == 1) {
        switch (f.fno) {
        case 1:
            if (scalar(&f, &seen, &mapping, 1))
                return -1;
            break;
        case 2:
            if (scalar(&f, &seen, &address, 0))
                return -1;
            break;
        case 3:
            if (f.wt != WT_LEN || line_msg(t, f.p0, f.p1))
                return -1;
            nlines++;
            break;
        case 4:
            if (repeated(&f, &t->c[LOC_ATTRS], 1, &nattrs))
                return -1;
            break;
        default:
            break;
        }
    }
    return r < 0 || push(&t->c[LOC_MAPPING], mapping) || push(&t->c[LOC_ADDRESS], address) ||
                   push(&t->c[LOC_NLINES], nlines) || push(&t->c[LOC_NATTRS], nattrs)
               ? -1
               : 0;
}

static int function_msg(cols *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    unsigned seen = 0;
    uint64_t name = 0, filename = 0, ignored;
    while ((r = next_field(&p, end, &f)) == 1) {
        if ((f.fno == 1 && scalar(&f, &seen, &name, 1)) || (f.fno == 3 && scalar(&f, &seen, &filename, 1)) ||
            ((f.fno == 2 || f.fno == 4) && scalar(&f, &seen, &ignored, 0)))
            return -1;
    }
    return r < 0 || push(&t->c[FN_NAME], name) || push(&t->c[FN_FILENAME], filename) ? -1 : 0;
}

static int stack_msg(cols *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    uint64_t n = 0;
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.fno == 1 && repeated(&f, &t->c[STACK_LOCATIONS], 1, &n))
            return -1;
    }
    return r < 0 || push(&t->c[STACK_LEN], n) ? -1 : 0;
}

static int dictionary_msg(cols *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    while ((r = next_field(&p, end, &f)) == 1) {
        int bad = 0;
        switch (f.fno) {
        case 2:
            bad = f.wt != WT_LEN || location_msg(t, f.p0, f.p1);
            break;
        case 3:
            bad = f.wt != WT_LEN || function_msg(t, f.p0, f.p1);
            break;
        case 7:
            bad = f.wt != WT_LEN || stack_msg(t, f.p0, f.p1);
            break;
        default:
            break;
        }
        if (bad)
            return -1;
    }
    return r;
}

static int sample_msg(cols *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    unsigned seen = 0;
    uint64_t stack = 0, ignored, nvalues = 0, nstamps = 0, nattrs = 0;
    while ((r = next_field(&p, end, &f)) == 1) {
        int bad = 0;
        switch (f.fno) {
        case 1:
            bad = scalar(&f, &seen, &stack, 1);
            break;
        case 2:
            bad = repeated(&f, &t->c[SMP_ATTRS], 1, &nattrs);
            break;
        case 3:
            bad = scalar(&f, &seen, &ignored, 0);
            break;
        case 4:
            bad = repeated(&f, &t->c[SMP_VALUES], 0, &nvalues);
            break;
        case 5: /* fixed64: only their count is used */
            if (f.wt == WT_I64)
                nstamps++;
            else if (f.wt == WT_LEN && (f.p1 - f.p0) % 8 == 0)
                nstamps += (uint64_t)(f.p1 - f.p0) / 8;
            else
                bad = 1;
            break;
        default:
            break;
        }
        if (bad)
            return -1;
    }
    return r < 0 || push(&t->c[SMP_PROFILE], t->profile) || push(&t->c[SMP_STACK], stack) ||
                   push(&t->c[SMP_NVALUES], nvalues) || push(&t->c[SMP_NSTAMPS], nstamps) ||
                   push(&t->c[SMP_NATTRS], nattrs)
               ? -1
               : 0;
}

/* Walks `depth` levels of length-delimited field 2 (ResourceProfiles.scope_profiles,
 * ScopeProfiles.profiles, Profile.samples) down to the samples. */
static int nested(cols *t, const uint8_t *p, const uint8_t *end, int depth) {
    field f;
    int r;
    while ((r = next_field(&p, end, &f)) == 1) {
        if (f.fno != 2)
            continue;
        if (f.wt != WT_LEN)
            return -1;
        if (depth == 0) {
            if (sample_msg(t, f.p0, f.p1))
                return -1;
        } else {
            if (nested(t, f.p0, f.p1, depth - 1))
                return -1;
            if (depth == 1) /* that was one Profile */
                t->profile++;
        }
    }
    return r;
}

static int request_msg(cols *t, const uint8_t *p, const uint8_t *end) {
    field f;
    int r;
    while ((r = next_field(&p, end, &f)) == 1) {
        if ((f.fno == 1 || f.fno == 2) && f.wt != WT_LEN)
            return -1;
        if (f.fno == 1 && nested(t, f.p0, f.p1, 2))
            return -1;
        if (f.fno == 2 && (t->dictionaries++ || dictionary_msg(t, f.p0, f.p1)))
            return -1;
    }
    return r;
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    cols t;
    memset(&t, 0, sizeof t);
    int bad;
    Py_BEGIN_ALLOW_THREADS
    bad = request_msg(&t, view.buf, (const uint8_t *)view.buf + view.len);
    Py_END_ALLOW_THREADS
    PyObject *out = NULL;
    if (bad) {
        out = Py_NewRef(Py_None);
    } else if ((out = PyTuple_New(NCOLS)) != NULL) {
        for (int i = 0; i < NCOLS; i++) {
            PyObject *b = PyBytes_FromStringAndSize((const char *)t.c[i].v, (Py_ssize_t)(t.c[i].n * sizeof(uint64_t)));
            if (b == NULL) {
                Py_CLEAR(out);
                break;
            }
            PyTuple_SET_ITEM(out, i, b);
        }
    }
    for (int i = 0; i < NCOLS; i++)
        free(t.c[i].v);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "Flat columns of an ExportProfilesServiceRequest's dictionary tables and samples, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlpscan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__otlpscan(void) { return PyModule_Create(&module); }
