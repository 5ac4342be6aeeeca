/*
 * Optional accelerator for slakit.calendar: the common case of
 * BusinessCalendar.add and BusinessCalendar.elapsed.
 *
 * Both functions answer only when the inputs are inside the fast path (exact
 * datetime/timedelta types, an aware start, a positive delta, instants inside
 * the calendar's current table) and return None otherwise, so the pure-Python
 * code keeps every slow path, every error and every message.
 *
 * The table arrives as one bytes object of native int64 values:
 *
 *     lo, hi, n, starts[n], ends[n], cum0[n], cum1[n]
 *
 * where [lo, hi) is the range of instants (UTC epoch microseconds) the table
 * covers completely, starts/ends are the open intervals and cum0/cum1 the open
 * time before the start/end of each one (see _Table in calendar.py).
 *
 * Results are built the way datetime.fromtimestamp(ts, tz) and
 * datetime.astimezone(tz) build theirs: a datetime holding the UTC fields with
 * tzinfo=tz, handed to tz.fromutc(), which picks the local time and fold.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>

#include <stdint.h>
#include <string.h>

#define US_PER_SECOND INT64_C(1000000)
#define US_PER_MINUTE (60 * US_PER_SECOND)
#define US_PER_HOUR (60 * US_PER_MINUTE)
#define US_PER_DAY (24 * US_PER_HOUR)
/* Deltas longer than this (about 11,000 years) are left to Python, which keeps
 * every int64 sum below from overflowing. */
#define MAX_DELTA_DAYS 4000000
#define HEADER 3

static PyObject *str_utcoffset = NULL;
static PyObject *str_fromutc = NULL;

/* A view of the packed table. */
typedef struct {
    const char *base;
    int64_t lo;
    int64_t hi;
    Py_ssize_t n;
} table_t;

static inline int64_t
load(const char *base, Py_ssize_t index)
{
    int64_t v;
    memcpy(&v, base + (size_t)index * sizeof(int64_t), sizeof v);
    return v;
}

#define STARTS(tb, i) load((tb)->base, HEADER + (i))
#define ENDS(tb, i) load((tb)->base, HEADER + (tb)->n + (i))
#define CUM0(tb, i) load((tb)->base, HEADER + 2 * (tb)->n + (i))
#define CUM1(tb, i) load((tb)->base, HEADER + 3 * (tb)->n + (i))

/* Return 1 and fill *tb when `packed` is a well-formed, non-empty table, else 0. */
static int
open_table(PyObject *packed, table_t *tb)
{
    if (!PyBytes_CheckExact(packed)) {
        return 0;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(packed);
    if (size < (Py_ssize_t)(HEADER * sizeof(int64_t))) {
        return 0;
    }
    tb->base = PyBytes_AS_STRING(packed);
    tb->lo = load(tb->base, 0);
    tb->hi = load(tb->base, 1);
    int64_t n = load(tb->base, 2);
    if (n <= 0 || n > (int64_t)(PY_SSIZE_T_MAX / 64)) {
        return 0;
    }
    tb->n = (Py_ssize_t)n;
    if ((size_t)size != ((size_t)HEADER + 4 * (size_t)tb->n) * sizeof(int64_t)) {
        return 0;
    }
    return 1;
}

/* Number of starts <= t (bisect_right). */
static inline Py_ssize_t
bisect_right_starts(const table_t *tb, int64_t t)
{
    Py_ssize_t lo = 0, hi = tb->n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (t < STARTS(tb, mid)) {
            hi = mid;
        }
        else {
            lo = mid + 1;
        }
    }
    return lo;
}

/* Number of cum1 values < target (bisect_left). */
static inline Py_ssize_t
bisect_left_cum1(const table_t *tb, int64_t target)
{
    Py_ssize_t lo = 0, hi = tb->n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (CUM1(tb, mid) < target) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* Open time before instant t, counted from the table's first interval. */
static inline int64_t
cum_at(const table_t *tb, int64_t t)
{
    Py_ssize_t i = bisect_right_starts(tb, t) - 1;
    if (i < 0) {
        return 0;
    }
    int64_t end = ENDS(tb, i);
    return CUM0(tb, i) + (t < end ? t : end) - STARTS(tb, i);
}

/* Floor division and its non-negative remainder. */
static inline int64_t
floor_div(int64_t a, int64_t b, int64_t *rem)
{
    int64_t q = a / b;
    int64_t r = a - q * b;
    if (r < 0) {
        r += b;
        q -= 1;
    }
    *rem = r;
    return q;
}

/*
 * Calendar arithmetic on the proleptic Gregorian calendar, with years counted
 * from March so that the leap day ends the year. A 400-year cycle has 146,097
 * days; day 0 of the March-based count is 0000-03-01, which is 719,468 days
 * before 1970-01-01.
 */
#define CYCLE_DAYS 146097
#define MARCH_0_TO_EPOCH 719468

static int64_t
days_from_civil(int year, int month, int day)
{
    int64_t y = (int64_t)year - (month <= 2 ? 1 : 0);
    int64_t rem;
    int64_t cycle = floor_div(y, 400, &rem);
    int64_t year_of_cycle = rem;                          /* 0..399 */
    int64_t month_from_march = (month + 9) % 12;          /* March = 0 */
    /* Day of the March-based year: months alternate 31/30 days, 153 days a
     * five-month run, so (153 * m + 2) / 5 counts the days before month m. */
    int64_t day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    int64_t day_of_cycle = year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 +
                           day_of_year;
    return cycle * CYCLE_DAYS + day_of_cycle - MARCH_0_TO_EPOCH;
}

static void
civil_from_days(int64_t days, int *year, int *month, int *day)
{
    int64_t day_of_cycle;
    int64_t cycle = floor_div(days + MARCH_0_TO_EPOCH, CYCLE_DAYS, &day_of_cycle);
    /* Year of the cycle: remove the leap days counted so far, then divide. */
    int64_t year_of_cycle = (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36524 -
                             day_of_cycle / (CYCLE_DAYS - 1)) /
                            365;
    int64_t day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    int64_t month_from_march = (5 * day_of_year + 2) / 153;
    *day = (int)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
    *month = (int)(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
    *year = (int)(cycle * 400 + year_of_cycle + (*month <= 2 ? 1 : 0));
}

static inline int64_t
delta_us(PyObject *delta)
{
    return (int64_t)PyDateTime_DELTA_GET_DAYS(delta) * US_PER_DAY +
           (int64_t)PyDateTime_DELTA_GET_SECONDS(delta) * US_PER_SECOND +
           (int64_t)PyDateTime_DELTA_GET_MICROSECONDS(delta);
}

/*
 * UTC epoch microseconds of an aware datetime, as `(dt - EPOCH) // 1us`.
 * Returns 1 with *out set, 0 when Python should answer (naive, not an exact
 * datetime, odd utcoffset), -1 with an exception set.
 */
static int
datetime_us(PyObject *dt, int64_t *out)
{
    if (!PyDateTime_CheckExact(dt)) {
        return 0;
    }
    PyObject *tzinfo = PyDateTime_DATE_GET_TZINFO(dt);
    int64_t offset = 0;
    if (tzinfo == Py_None) {
        return 0;
    }
    if (tzinfo != PyDateTime_TimeZone_UTC) {
        /* What dt.utcoffset() does, minus its slow by-name method call: ask the
         * tzinfo (which sees fold), and accept only what datetime accepts. Python
         * answers anything else, raising datetime's own error. */
        PyObject *off = PyObject_CallMethodOneArg(tzinfo, str_utcoffset, dt);
        if (off == NULL) {
            return -1;
        }
        if (!PyDelta_Check(off)) {
            Py_DECREF(off);
            return 0;
        }
        offset = delta_us(off);
        Py_DECREF(off);
        if (offset <= -US_PER_DAY || offset >= US_PER_DAY) {
            return 0;
        }
    }
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(dt), PyDateTime_GET_MONTH(dt),
                                   PyDateTime_GET_DAY(dt));
    *out = days * US_PER_DAY + PyDateTime_DATE_GET_HOUR(dt) * US_PER_HOUR +
           PyDateTime_DATE_GET_MINUTE(dt) * US_PER_MINUTE +
           PyDateTime_DATE_GET_SECOND(dt) * US_PER_SECOND +
           PyDateTime_DATE_GET_MICROSECOND(dt) - offset;
    return 1;
}

/* The instant `us` as an aware datetime in `tz`, or NULL with an exception set
 * (or NULL without one when the year is out of datetime's range). */
static PyObject *
from_us(int64_t us, PyObject *tz)
{
    int64_t rem;
    int64_t days = floor_div(us, US_PER_DAY, &rem);
    int year, month, day;
    civil_from_days(days, &year, &month, &day);
    if (year < 1 || year > 9999) {
        return NULL;
    }
    int hour = (int)(rem / US_PER_HOUR);
    rem -= hour * US_PER_HOUR;
    int minute = (int)(rem / US_PER_MINUTE);
    rem -= minute * US_PER_MINUTE;
    int second = (int)(rem / US_PER_SECOND);
    int micro = (int)(rem - second * US_PER_SECOND);
    PyObject *utc = PyDateTimeAPI->DateTime_FromDateAndTime(
        year, month, day, hour, minute, second, micro, tz, PyDateTimeAPI->DateTimeType);
    if (utc == NULL) {
        return NULL;
    }
    PyObject *local = PyObject_CallMethodOneArg(tz, str_fromutc, utc);
    Py_DECREF(utc);
    return local;
}

/* Turn an ordinary exception into "let Python answer"; let others through. */
static PyObject *
fall_back(void)
{
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(add_fast_doc,
             "add_fast(start, delta, packed, tz, /)\n--\n\n"
             "BusinessCalendar.add for a positive delta from an instant the packed table\n"
             "covers, when the answer lies inside it; None whenever Python must answer.");

static PyObject *
add_fast(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "add_fast expected 4 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *start = args[0], *delta = args[1], *packed = args[2], *tz = args[3];
    table_t tb;
    if (!PyDelta_CheckExact(delta) || !open_table(packed, &tb)) {
        Py_RETURN_NONE;
    }
    int days = PyDateTime_DELTA_GET_DAYS(delta);
    if (days < 0 || days > MAX_DELTA_DAYS) {
        Py_RETURN_NONE;
    }
    int64_t d = delta_us(delta);
    if (d <= 0) {
        Py_RETURN_NONE;
    }
    int64_t t;
    int ok = datetime_us(start, &t);
    if (ok <= 0) {
        return fall_back();
    }
    if (!(tb.lo <= t && t < tb.hi)) {
        Py_RETURN_NONE;
    }
    int64_t target = cum_at(&tb, t) + d;
    if (target > CUM1(&tb, tb.n - 1)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t j = bisect_left_cum1(&tb, target);
    int64_t us = ENDS(&tb, j) - CUM1(&tb, j) + target;
    PyObject *result = from_us(us, tz);
    if (result == NULL) {
        return fall_back();
    }
    return result;
}

PyDoc_STRVAR(elapsed_fast_doc,
             "elapsed_fast(start, end, packed, /)\n--\n\n"
             "BusinessCalendar.elapsed for two instants the packed table covers;\n"
             "None whenever Python must answer.");

static PyObject *
elapsed_fast(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "elapsed_fast expected 3 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *start = args[0], *end = args[1], *packed = args[2];
    table_t tb;
    if (!open_table(packed, &tb)) {
        Py_RETURN_NONE;
    }
    int64_t s, e;
    int ok = datetime_us(start, &s);
    if (ok <= 0) {
        return fall_back();
    }
    ok = datetime_us(end, &e);
    if (ok <= 0) {
        return fall_back();
    }
    int64_t lo = s <= e ? s : e;
    int64_t hi = s <= e ? e : s;
    if (!(tb.lo <= lo && hi < tb.hi)) {
        Py_RETURN_NONE;
    }
    int64_t diff = cum_at(&tb, e) - cum_at(&tb, s);
    int64_t rem;
    int64_t days = floor_div(diff, US_PER_DAY, &rem);
    return PyDateTimeAPI->Delta_FromDelta((int)days, (int)(rem / US_PER_SECOND),
                                          (int)(rem % US_PER_SECOND), 1,
                                          PyDateTimeAPI->DeltaType);
}

static PyMethodDef ccal_methods[] = {
    {"add_fast", (PyCFunction)(void (*)(void))add_fast, METH_FASTCALL, add_fast_doc},
    {"elapsed_fast", (PyCFunction)(void (*)(void))elapsed_fast, METH_FASTCALL,
     elapsed_fast_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ccal_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "slakit._ccal",
    .m_doc = "Compiled fast paths of slakit.calendar (optional; see docs/calendar.md).",
    .m_size = -1,
    .m_methods = ccal_methods,
};

PyMODINIT_FUNC
PyInit__ccal(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    if (str_utcoffset == NULL) {
        str_utcoffset = PyUnicode_InternFromString("utcoffset");
        if (str_utcoffset == NULL) {
            return NULL;
        }
    }
    if (str_fromutc == NULL) {
        str_fromutc = PyUnicode_InternFromString("fromutc");
        if (str_fromutc == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&ccal_module);
}
