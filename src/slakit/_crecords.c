/*
 * Optional accelerator for the engine's and the SQL stores' hot path: building
 * records without __init__, and UTC microseconds <-> aware datetimes.
 *
 * slakit._build and slakit._time use these when the module is present and
 * fall back to their pure-Python code otherwise; the results are the same
 * (tests build every record both ways and compare).
 *
 * Builder(cls, names) makes instances of a slotted class with every named
 * slot set, the way object.__new__(cls) followed by each slot descriptor's
 * __set__ does, without calling __init__. The descriptors are looked up and
 * checked once, when the builder is made.
 *
 * from_us(n) is datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=n);
 * to_us(dt) is (dt - that epoch) in whole microseconds. Exact datetimes with
 * tzinfo=UTC take the fast path; anything else goes through the same
 * datetime arithmetic as the Python code, with its results and its errors.
 *
 * encode_row(values, kinds, text) and decode_row(row, kinds, empty, parse)
 * turn a record's values into a database row and back, one code per column:
 * 'o' as it is, 'd' datetime <-> microseconds (None stays None), 'b' a flag
 * (bool <-> 0/1), 'B' an optional flag (None stays None), 'j' a mapping <->
 * its JSON text (text(value) one way; "{}" -> empty, else parse(text) the
 * other). The SQLite store keeps the same conversions in Python.
 *
 * Builder.rows(objects, spec, text) turns a step's trace, outbox or
 * escalation records into rows the same way, reading each record's slots
 * directly; detail_json(fallback, detail) is a trace detail's
 * JSON text, row_json(row) a row's and compact_payload(row, step, stage, link)
 * a step payload's. The SQLite store's _python_trace_rows, _python_outbox_rows,
 * _python_escalation_rows, _python_detail_json, _python_row_json and
 * _python_compact_payload are the Python versions.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define US_PER_SECOND INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_SECOND)
/* 0001-01-01 and 10000-01-01 as days since 1970-01-01: datetime's range. */
#define MIN_DAYS INT64_C(-719162)
#define END_DAYS INT64_C(2932897)

static PyObject *epoch = NULL; /* datetime(1970, 1, 1, tzinfo=UTC) */

static PyObject *convert_one(PyObject *module, char kind, PyObject *v, int encode,
                             PyObject *const *fns);

/* -- Builder ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    Py_ssize_t n;
    PyMemberDef **members; /* one per name, from the class's slot descriptors */
    PyObject *descriptors; /* keeps the descriptors (and their PyMemberDefs) alive */
    PyObject *index;       /* name -> position, for replace() */
    int packed;            /* 1: build(values); 0: build(*values) */
    vectorcallfunc vectorcall;
} Builder;

static PyObject *
build(Builder *self, PyObject *const *values, Py_ssize_t count)
{
    if (count != self->n) {
        /* As the Python builders: a wrong argument count is a TypeError, a
         * sequence of the wrong length (unpacking) a ValueError. */
        PyErr_Format(self->packed ? PyExc_ValueError : PyExc_TypeError,
                     "%s builder takes %zd values, got %zd", self->cls->tp_name, self->n,
                     count);
        return NULL;
    }
    PyObject *obj = self->cls->tp_alloc(self->cls, 0);
    if (obj == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyMember_SetOne((char *)obj, self->members[i], values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

static PyObject *
builder_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Builder *self = (Builder *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        PyErr_SetString(PyExc_TypeError, "a record builder takes no keyword arguments");
        return NULL;
    }
    if (!self->packed) {
        return build(self, args, nargs);
    }
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "%s builder takes one sequence, got %zd arguments",
                     self->cls->tp_name, nargs);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "a record builder takes a sequence of values");
    if (seq == NULL) {
        return NULL;
    }
    PyObject *result =
        build(self, PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq));
    Py_DECREF(seq);
    return result;
}

/* Builder.replace(obj, **changes): a copy of obj (an instance of exactly the
 * builder's class) with the named slots changed, like the Python
 * obj._replace(**changes): no __init__, and KeyError for an unknown name. */
static PyObject *
builder_replace(Builder *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "replace takes one %s and keywords", self->cls->tp_name);
        return NULL;
    }
    PyObject *src = args[0];
    if (Py_TYPE(src) != self->cls) {
        PyErr_Format(PyExc_TypeError, "replace needs a %s, got %s", self->cls->tp_name,
                     Py_TYPE(src)->tp_name);
        return NULL;
    }
    PyObject *obj = self->cls->tp_alloc(self->cls, 0);
    if (obj == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyObject *v = PyMember_GetOne((const char *)src, self->members[i]);
        if (v == NULL) {
            Py_DECREF(obj);
            return NULL;
        }
        int failed = PyMember_SetOne((char *)obj, self->members[i], v);
        Py_DECREF(v);
        if (failed < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        PyObject *at = PyDict_GetItemWithError(self->index, name);
        if (at == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetObject(PyExc_KeyError, name);
            }
            Py_DECREF(obj);
            return NULL;
        }
        if (PyMember_SetOne((char *)obj, self->members[PyLong_AsSsize_t(at)], args[nargs + k]) <
            0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

/* Builder.rows(objects, spec, text): one row (a tuple) per object, each an
 * instance of exactly the builder's class. spec is bytes, two per column: the
 * slot's position in the builder's names, then its kind as in encode_row.
 * A 'j' column's text(value) is called once per distinct value object in the
 * call (a step's records share their details and payloads; a batch of starts
 * shares a detail per owner pair), remembered in a table keyed by identity. */

typedef struct {
    PyObject *key; /* a strong reference; NULL for a free slot */
    PyObject *text;
} TextSlot;

typedef struct {
    TextSlot local[16];
    TextSlot *slots;
    size_t mask;
    size_t used;
} TextMemo;

#define MEMO_MAX_SLOTS ((size_t)1 << 16)

static void
memo_init(TextMemo *memo)
{
    memset(memo->local, 0, sizeof(memo->local));
    memo->slots = memo->local;
    memo->mask = 15;
    memo->used = 0;
}

static size_t
memo_hash(PyObject *key, size_t mask)
{
    return (size_t)((((uintptr_t)key >> 4) * UINT64_C(0x9E3779B97F4A7C15)) >> 20) & mask;
}

static TextSlot *
memo_find(TextMemo *memo, PyObject *key)
{
    size_t i = memo_hash(key, memo->mask);
    while (memo->slots[i].key != NULL && memo->slots[i].key != key) {
        i = (i + 1) & memo->mask;
    }
    return &memo->slots[i];
}

/* Room for one more entry; 0 when the table is at its largest (then the caller
 * just does not remember), -1 on a memory error. */
static int
memo_reserve(TextMemo *memo)
{
    size_t size = memo->mask + 1;
    if ((memo->used + 1) * 4 <= size * 3) {
        return 1;
    }
    if (size * 2 > MEMO_MAX_SLOTS) {
        return 0;
    }
    TextSlot *bigger = PyMem_Calloc(size * 2, sizeof(TextSlot));
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    TextSlot *old = memo->slots;
    memo->slots = bigger;
    memo->mask = size * 2 - 1;
    for (size_t i = 0; i < size; i++) {
        if (old[i].key != NULL) {
            *memo_find(memo, old[i].key) = old[i];
        }
    }
    if (old != memo->local) {
        PyMem_Free(old);
    }
    return 1;
}

static void
memo_clear(TextMemo *memo)
{
    for (size_t i = 0; i <= memo->mask; i++) {
        Py_XDECREF(memo->slots[i].key);
        Py_XDECREF(memo->slots[i].text);
    }
    if (memo->slots != memo->local) {
        PyMem_Free(memo->slots);
    }
}

/* text(v), or what it gave for the same object earlier in the call. */
static PyObject *
memo_text(TextMemo *memo, PyObject *text, PyObject *v)
{
    TextSlot *slot = memo_find(memo, v);
    if (slot->key != NULL) {
        return Py_NewRef(slot->text);
    }
    PyObject *r = PyObject_CallOneArg(text, v);
    if (r == NULL) {
        return NULL;
    }
    int room = memo_reserve(memo);
    if (room < 0) {
        Py_DECREF(r);
        return NULL;
    }
    if (room > 0) {
        slot = memo_find(memo, v); /* the table may have grown */
        slot->key = Py_NewRef(v);
        slot->text = Py_NewRef(r);
        memo->used++;
    }
    return r;
}

static PyObject *
builder_rows(Builder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "rows takes objects, spec and text");
        return NULL;
    }
    PyObject *objects = args[0], *spec = args[1];
    PyObject *const *text = args + 2;
    if (!PyList_Check(objects) && !PyTuple_Check(objects)) {
        PyErr_SetString(PyExc_TypeError, "objects must be a list or a tuple");
        return NULL;
    }
    if (!PyBytes_Check(spec) || PyBytes_GET_SIZE(spec) % 2 != 0) {
        PyErr_SetString(PyExc_TypeError, "spec must be bytes of (slot, kind) pairs");
        return NULL;
    }
    const unsigned char *codes = (const unsigned char *)PyBytes_AS_STRING(spec);
    Py_ssize_t ncols = PyBytes_GET_SIZE(spec) / 2;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        if ((Py_ssize_t)codes[2 * c] >= self->n) {
            PyErr_Format(PyExc_ValueError, "spec names slot %d of %zd", (int)codes[2 * c],
                         self->n);
            return NULL;
        }
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(objects);
    PyObject **items = PySequence_Fast_ITEMS(objects);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        return NULL;
    }
    TextMemo memo;
    memo_init(&memo);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj = items[i];
        if (Py_TYPE(obj) != self->cls) {
            PyErr_Format(PyExc_TypeError, "rows needs %s objects, got %s", self->cls->tp_name,
                         Py_TYPE(obj)->tp_name);
            goto fail;
        }
        PyObject *row = PyTuple_New(ncols);
        if (row == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out, i, row);
        for (Py_ssize_t c = 0; c < ncols; c++) {
            PyObject *v = PyMember_GetOne((const char *)obj, self->members[codes[2 * c]]);
            if (v == NULL) {
                goto fail;
            }
            char kind = (char)codes[2 * c + 1];
            PyObject *r =
                kind == 'j' ? memo_text(&memo, text[0], v) : convert_one(NULL, kind, v, 1, text);
            Py_DECREF(v);
            if (r == NULL) {
                goto fail;
            }
            PyTuple_SET_ITEM(row, c, r);
        }
    }
    memo_clear(&memo);
    return out;
fail:
    memo_clear(&memo);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef builder_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))builder_rows, METH_FASTCALL,
     "rows(objects, spec, text): each object's slots as a row, encoded column by column."},
    {"replace", (PyCFunction)(void (*)(void))builder_replace, METH_FASTCALL | METH_KEYWORDS,
     "replace(obj, **changes): a copy of obj with the named slots changed."},
    {NULL, NULL, 0, NULL},
};

static int
builder_init_members(Builder *self, PyObject *names)
{
    PyObject *tuple = PySequence_Tuple(names);
    if (tuple == NULL) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    self->descriptors = PyTuple_New(n);
    self->index = PyDict_New();
    self->members = PyMem_New(PyMemberDef *, n > 0 ? n : 1);
    if (self->descriptors == NULL || self->index == NULL || self->members == NULL) {
        Py_DECREF(tuple);
        PyErr_NoMemory();
        return -1;
    }
    self->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(tuple, i);
        PyObject *descr = PyObject_GetAttr((PyObject *)self->cls, name);
        if (descr == NULL) {
            Py_DECREF(tuple);
            return -1;
        }
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
            !PyType_IsSubtype(self->cls, PyDescr_TYPE(descr))) {
            PyErr_Format(PyExc_TypeError, "%R of %s is not one of its slots", name,
                         self->cls->tp_name);
            Py_DECREF(descr);
            Py_DECREF(tuple);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError, "slot %R of %s is not a plain object slot", name,
                         self->cls->tp_name);
            Py_DECREF(descr);
            Py_DECREF(tuple);
            return -1;
        }
        self->members[i] = member;
        PyTuple_SET_ITEM(self->descriptors, i, descr); /* steals the reference */
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL || PyDict_SetItem(self->index, name, at) < 0) {
            Py_XDECREF(at);
            Py_DECREF(tuple);
            return -1;
        }
        Py_DECREF(at);
    }
    Py_DECREF(tuple);
    return 0;
}

static PyObject *
builder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"cls", "names", "packed", NULL};
    PyObject *cls;
    PyObject *names;
    int packed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O|p:Builder", keywords, &PyType_Type, &cls,
                                     &names, &packed)) {
        return NULL;
    }
    PyTypeObject *klass = (PyTypeObject *)cls;
    if (klass->tp_new != PyBaseObject_Type.tp_new || klass->tp_alloc == NULL) {
        PyErr_Format(PyExc_TypeError, "%s must be created by object.__new__", klass->tp_name);
        return NULL;
    }
    Builder *self = (Builder *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(cls);
    self->cls = klass;
    self->packed = packed;
    self->vectorcall = builder_vectorcall;
    if (builder_init_members(self, names) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
builder_traverse(Builder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    Py_VISIT(self->descriptors);
    Py_VISIT(self->index);
    return 0;
}

static int
builder_clear(Builder *self)
{
    Py_CLEAR(self->cls);
    Py_CLEAR(self->descriptors);
    Py_CLEAR(self->index);
    return 0;
}

static void
builder_dealloc(Builder *self)
{
    PyObject_GC_UnTrack(self);
    builder_clear(self);
    PyMem_Free(self->members);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
builder_repr(Builder *self)
{
    return PyUnicode_FromFormat("<slakit record builder for %s, %zd slots%s>",
                                self->cls ? self->cls->tp_name : "?", self->n,
                                self->packed ? ", packed" : "");
}

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "slakit._crecords.Builder",
    .tp_basicsize = sizeof(Builder),
    .tp_dealloc = (destructor)builder_dealloc,
    .tp_vectorcall_offset = offsetof(Builder, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)builder_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Builder(cls, names, packed=False): instances of cls with the named slots set.",
    .tp_traverse = (traverseproc)builder_traverse,
    .tp_methods = builder_methods,
    .tp_clear = (inquiry)builder_clear,
    .tp_new = builder_new,
};

/* -- microseconds <-> datetime ---------------------------------------------- */

/* Civil date of a day count since 1970-01-01 (proleptic Gregorian). */
static void
civil_from_days(int64_t z, int *year, int *month, int *day)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    *year = (int)(y + (m <= 2));
    *month = (int)m;
    *day = (int)d;
}

/* Days since 1970-01-01 of a civil date. */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static PyObject *
from_us(PyObject *module, PyObject *arg)
{
    int overflow = 0;
    long long value = PyLong_Check(arg) ? PyLong_AsLongLongAndOverflow(arg, &overflow) : 0;
    if (!PyLong_CheckExact(arg) || overflow) {
        /* Anything else (bools, other ints, huge values) the way Python does it. */
        PyObject *delta = PyObject_CallFunction((PyObject *)PyDateTimeAPI->DeltaType, "iiO", 0,
                                                0, arg);
        if (delta == NULL) {
            return NULL;
        }
        PyObject *result = PyNumber_Add(epoch, delta);
        Py_DECREF(delta);
        return result;
    }
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int64_t us = (int64_t)value;
    int64_t days = us / US_PER_DAY;
    int64_t rest = us % US_PER_DAY;
    if (rest < 0) {
        rest += US_PER_DAY;
        days -= 1;
    }
    if (days < MIN_DAYS || days >= END_DAYS) {
        PyErr_SetString(PyExc_OverflowError, "date value out of range");
        return NULL;
    }
    int year, month, day;
    civil_from_days(days, &year, &month, &day);
    int64_t seconds = rest / US_PER_SECOND;
    return PyDateTimeAPI->DateTime_FromDateAndTime(
        year, month, day, (int)(seconds / 3600), (int)(seconds / 60 % 60), (int)(seconds % 60),
        (int)(rest % US_PER_SECOND), PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
}

static PyObject *
to_us(PyObject *module, PyObject *arg)
{
    if (PyDateTime_CheckExact(arg) &&
        PyDateTime_DATE_GET_TZINFO(arg) == PyDateTime_TimeZone_UTC) {
        int64_t days = days_from_civil(PyDateTime_GET_YEAR(arg), PyDateTime_GET_MONTH(arg),
                                       PyDateTime_GET_DAY(arg));
        int64_t seconds = PyDateTime_DATE_GET_HOUR(arg) * 3600 +
                          PyDateTime_DATE_GET_MINUTE(arg) * 60 +
                          PyDateTime_DATE_GET_SECOND(arg);
        return PyLong_FromLongLong(days * US_PER_DAY + seconds * US_PER_SECOND +
                                   PyDateTime_DATE_GET_MICROSECOND(arg));
    }
    /* Other zones, naive values and other types: the Python arithmetic and errors. */
    PyObject *delta = PyNumber_Subtract(arg, epoch);
    if (delta == NULL) {
        return NULL;
    }
    if (!PyDelta_Check(delta)) {
        Py_DECREF(delta);
        PyErr_SetString(PyExc_TypeError, "to_us needs a datetime");
        return NULL;
    }
    int64_t total = (int64_t)PyDateTime_DELTA_GET_DAYS(delta) * US_PER_DAY +
                    (int64_t)PyDateTime_DELTA_GET_SECONDS(delta) * US_PER_SECOND +
                    PyDateTime_DELTA_GET_MICROSECONDS(delta);
    Py_DECREF(delta);
    return PyLong_FromLongLong(total);
}

/* -- rows ------------------------------------------------------------------ */

/* One column, one way: encode (values -> row) or decode (row -> values). */
static PyObject *
convert_one(PyObject *module, char kind, PyObject *v, int encode, PyObject *const *fns)
{
    int truth;
    switch (kind) {
    case 'o':
        return Py_NewRef(v);
    case 'd':
        if (v == Py_None) {
            return Py_NewRef(Py_None);
        }
        return encode ? to_us(module, v) : from_us(module, v);
    case 'B':
        if (v == Py_None) {
            return Py_NewRef(Py_None);
        }
        /* fall through */
    case 'b':
        truth = PyObject_IsTrue(v);
        if (truth < 0) {
            return NULL;
        }
        return encode ? PyLong_FromLong(truth) : PyBool_FromLong(truth);
    case 'j':
        if (encode) {
            return PyObject_CallOneArg(fns[0], v); /* text(mapping) */
        }
        if (PyUnicode_Check(v) && PyUnicode_GET_LENGTH(v) == 2 &&
            PyUnicode_READ_CHAR(v, 0) == '{' && PyUnicode_READ_CHAR(v, 1) == '}') {
            return Py_NewRef(fns[0]); /* empty */
        }
        return PyObject_CallOneArg(fns[1], v); /* parse(text) */
    default:
        PyErr_Format(PyExc_ValueError, "unknown kind %c", kind);
        return NULL;
    }
}

/* args: the sequence, the kinds, then encode's text or decode's empty and parse. */
static PyObject *
convert_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs, int encode)
{
    const char *name = encode ? "encode_row" : "decode_row";
    Py_ssize_t expected = encode ? 3 : 4;
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", name, expected);
        return NULL;
    }
    PyObject *seq = args[0], *kinds = args[1];
    if (!PyTuple_Check(seq) && !PyList_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "values must be a tuple or a list");
        return NULL;
    }
    if (!PyBytes_Check(kinds)) {
        PyErr_SetString(PyExc_TypeError, "kinds must be bytes");
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (PyBytes_GET_SIZE(kinds) != n) {
        PyErr_Format(PyExc_ValueError, "%zd values for %zd kinds", n, PyBytes_GET_SIZE(kinds));
        return NULL;
    }
    const char *codes = PyBytes_AS_STRING(kinds);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *out = PyTuple_New(n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = convert_one(module, codes[i], items[i], encode, args + 2);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, v);
    }
    return out;
}

static PyObject *
encode_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return convert_row(module, args, nargs, 1);
}

static PyObject *
decode_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return convert_row(module, args, nargs, 0);
}

/* -- JSON text: trace details, rows, step payloads ----------------------------- */

/* A growing byte buffer for row_json, on the stack until it needs more. */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
    char small[1024];
} Buf;

static int
buf_put(Buf *b, const char *s, Py_ssize_t n)
{
    if (b->len + n > b->cap) {
        Py_ssize_t cap = (b->len + n) * 2;
        char *grown = PyMem_Malloc((size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(grown, b->data, (size_t)b->len);
        if (b->data != b->small) {
            PyMem_Free(b->data);
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

/* A text value as json.encoder.encode_basestring writes it (ensure_ascii=False):
 * '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX, every
 * other character as it is (here as its UTF-8 bytes). */
static int
put_text(Buf *b, PyObject *text)
{
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(text, &n);
    if (u == NULL) {
        return -1;
    }
    if (buf_put(b, "\"", 1) < 0) {
        return -1;
    }
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        if (buf_put(b, u + run, i - run) < 0) {
            return -1;
        }
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        Py_ssize_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            len = 6;
        }
        if (buf_put(b, esc, len) < 0) {
            return -1;
        }
    }
    if (buf_put(b, u + run, n - run) < 0) {
        return -1;
    }
    return buf_put(b, "\"", 1);
}

/* x in decimal, then suffix (snprintf would take most of a row's time). */
static int
put_digits(Buf *b, long long x, const char *suffix, Py_ssize_t suffix_len)
{
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0) {
        *--p = '-';
    }
    if (buf_put(b, p, end - p) < 0) {
        return -1;
    }
    return suffix_len ? buf_put(b, suffix, suffix_len) : 0;
}

/* A whole number as int.__repr__ writes it. */
static int
put_int(Buf *b, PyObject *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow) {
        PyObject *r = PyLong_Type.tp_repr(v);
        Py_ssize_t len;
        const char *t = r == NULL ? NULL : PyUnicode_AsUTF8AndSize(r, &len);
        int failed = t == NULL ? -1 : buf_put(b, t, len);
        Py_XDECREF(r);
        return failed;
    }
    return put_digits(b, x, "", 0);
}

/* v as json.dumps writes it (compact, ensure_ascii=False) when it is text a
 * UTF-8 encoder takes, a whole number, a finite float, a flag or None: 1 when
 * written, 0 (nothing written, no error set) for any other value, -1 on error. */
static int
put_value(Buf *b, PyObject *v)
{
    if (v == Py_None) {
        return buf_put(b, "null", 4) < 0 ? -1 : 1;
    }
    if (v == Py_True) {
        return buf_put(b, "true", 4) < 0 ? -1 : 1;
    }
    if (v == Py_False) {
        return buf_put(b, "false", 5) < 0 ? -1 : 1;
    }
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t mark = b->len;
        if (put_text(b, v) == 0) {
            return 1;
        }
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return -1;
        }
        PyErr_Clear(); /* a lone surrogate: left to the json module */
        b->len = mark;
        return 0;
    }
    if (PyLong_CheckExact(v)) {
        return put_int(b, v) < 0 ? -1 : 1;
    }
    if (PyFloat_CheckExact(v) && isfinite(PyFloat_AS_DOUBLE(v))) {
        double d = PyFloat_AS_DOUBLE(v);
        if (d == floor(d) && fabs(d) < 1e16 && !(d == 0 && signbit(d))) {
            /* float.__repr__ of a whole number below 1e16: its digits and ".0" */
            return put_digits(b, (long long)d, ".0", 2) < 0 ? -1 : 1;
        }
        char *t = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (t == NULL) {
            return -1;
        }
        int failed = buf_put(b, t, (Py_ssize_t)strlen(t));
        PyMem_Free(t);
        return failed < 0 ? -1 : 1;
    }
    return 0;
}

static void
buf_init(Buf *b)
{
    b->data = b->small;
    b->len = 0;
    b->cap = (Py_ssize_t)sizeof(b->small);
}

/* The buffer's text as a str (NULL if failed), and the buffer freed. */
static PyObject *
buf_finish(Buf *b, int failed)
{
    PyObject *result = failed < 0 ? NULL : PyUnicode_DecodeUTF8(b->data, b->len, "strict");
    if (b->data != b->small) {
        PyMem_Free(b->data);
    }
    return result;
}

/* The JSON array of a tuple of plain values (see put_value), as the SQLite
 * store's _row_json writes it; TypeError for any other value. */
static int
put_row(Buf *b, PyObject *row)
{
    if (!PyTuple_Check(row)) {
        PyErr_SetString(PyExc_TypeError, "a row must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(row);
    if (buf_put(b, "[", 1) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(row, i);
        if (i > 0 && buf_put(b, ",", 1) < 0) {
            return -1;
        }
        int put = put_value(b, v);
        if (put == 0) {
            PyErr_Format(PyExc_TypeError, "a row cannot hold a %.100s", Py_TYPE(v)->tp_name);
        }
        if (put <= 0) {
            return -1;
        }
    }
    return buf_put(b, "]", 1);
}

static PyObject *s_empty_object; /* "{}" */

/* detail_json(fallback, detail): the JSON text of a trace detail, built
 * directly when every key is text and every value plain (see put_value);
 * fallback(detail) otherwise. The text is the SQLite store's _detail_json's. */
static PyObject *
detail_json(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "detail_json takes fallback and detail");
        return NULL;
    }
    PyObject *fallback = args[0], *detail = args[1];
    int truth = PyObject_IsTrue(detail);
    if (truth <= 0) {
        return truth < 0 ? NULL : Py_NewRef(s_empty_object);
    }
    PyObject *items = PyMapping_Items(detail);
    if (items == NULL) {
        return NULL;
    }
    Buf b;
    buf_init(&b);
    int failed = buf_put(&b, "{", 1), plain = 1;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n && failed == 0 && plain; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            PyErr_SetString(PyExc_TypeError, "items() must give pairs");
            failed = -1;
            break;
        }
        PyObject *key = PyTuple_GET_ITEM(item, 0);
        int put = PyUnicode_CheckExact(key) ? put_value(&b, key) : 0;
        if (put == 1) {
            put = buf_put(&b, ":", 1) < 0 ? -1 : put_value(&b, PyTuple_GET_ITEM(item, 1));
        }
        if (put < 0) {
            failed = -1;
        }
        else if (put == 0) {
            plain = 0;
        }
        else if (i + 1 < n) {
            failed = buf_put(&b, ",", 1);
        }
    }
    Py_DECREF(items);
    if (failed == 0 && !plain) {
        buf_finish(&b, -1);
        return PyObject_CallOneArg(fallback, detail);
    }
    if (failed == 0) {
        failed = buf_put(&b, "}", 1);
    }
    return buf_finish(&b, failed);
}

/* row_json(row): put_row's text. */
static PyObject *
row_json(PyObject *module, PyObject *row)
{
    Buf b;
    buf_init(&b);
    return buf_finish(&b, put_row(&b, row));
}

/* compact_payload(row, step, stage, link): a step payload in the SQLite store's
 * compact form, {"handoff@":ROW,"step":STEP,"stage":STAGE,"link":LINK}, as its
 * _python_compact_payload writes it; TypeError unless step and link are text
 * and stage a whole number. */
static PyObject *
compact_payload(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "compact_payload takes row, step, stage and link");
        return NULL;
    }
    PyObject *step = args[1], *stage = args[2], *link = args[3];
    if (!PyUnicode_CheckExact(step) || !PyLong_CheckExact(stage) || !PyUnicode_CheckExact(link)) {
        PyErr_SetString(PyExc_TypeError, "compact_payload needs text, a whole number, text");
        return NULL;
    }
    Buf b;
    buf_init(&b);
    int failed = buf_put(&b, "{\"handoff@\":", 12) < 0 || put_row(&b, args[0]) < 0 ||
                 buf_put(&b, ",\"step\":", 8) < 0 || put_text(&b, step) < 0 ||
                 buf_put(&b, ",\"stage\":", 9) < 0 || put_int(&b, stage) < 0 ||
                 buf_put(&b, ",\"link\":", 8) < 0 || put_text(&b, link) < 0 ||
                 buf_put(&b, "}", 1) < 0;
    return buf_finish(&b, failed ? -1 : 0);
}

PyDoc_STRVAR(compact_payload_doc,
             "compact_payload(row, step, stage, link): a step payload's compact JSON text.");

PyDoc_STRVAR(row_json_doc, "row_json(row): a row of plain values as a compact JSON array.");

PyDoc_STRVAR(detail_json_doc,
             "detail_json(fallback, detail): a trace detail's JSON text.");

PyDoc_STRVAR(encode_row_doc, "encode_row(values, kinds, text): a record's values as a row.");
PyDoc_STRVAR(decode_row_doc, "decode_row(row, kinds, empty, parse): a row as a record's values.");

PyDoc_STRVAR(from_us_doc, "from_us(n): datetime(1970, 1, 1, tzinfo=UTC) + n microseconds.");
PyDoc_STRVAR(to_us_doc, "to_us(dt): microseconds from 1970-01-01 UTC to the aware datetime dt.");

static PyMethodDef crecords_methods[] = {
    {"from_us", (PyCFunction)from_us, METH_O, from_us_doc},
    {"to_us", (PyCFunction)to_us, METH_O, to_us_doc},
    {"encode_row", (PyCFunction)(void (*)(void))encode_row, METH_FASTCALL, encode_row_doc},
    {"decode_row", (PyCFunction)(void (*)(void))decode_row, METH_FASTCALL, decode_row_doc},
    {"detail_json", (PyCFunction)(void (*)(void))detail_json, METH_FASTCALL, detail_json_doc},
    {"row_json", (PyCFunction)row_json, METH_O, row_json_doc},
    {"compact_payload", (PyCFunction)(void (*)(void))compact_payload, METH_FASTCALL,
     compact_payload_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef crecords_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "slakit._crecords",
    .m_doc = "Compiled record builders and time conversions (optional; see docs/stores.md).",
    .m_size = -1,
    .m_methods = crecords_methods,
};

PyMODINIT_FUNC
PyInit__crecords(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    if (epoch == NULL) {
        epoch = PyDateTimeAPI->DateTime_FromDateAndTime(1970, 1, 1, 0, 0, 0, 0,
                                                        PyDateTime_TimeZone_UTC,
                                                        PyDateTimeAPI->DateTimeType);
        if (epoch == NULL) {
            return NULL;
        }
    }
    if (PyType_Ready(&BuilderType) < 0) {
        return NULL;
    }
    if (s_empty_object == NULL) {
        s_empty_object = PyUnicode_InternFromString("{}");
        if (s_empty_object == NULL) {
            return NULL;
        }
    }
    PyObject *module = PyModule_Create(&crecords_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&BuilderType);
    if (PyModule_AddObject(module, "Builder", (PyObject *)&BuilderType) < 0) {
        Py_DECREF(&BuilderType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
