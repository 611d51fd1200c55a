/*
 * The DNS server's UDP fast path, compiled: per reader wake-up, receive a
 * batch of datagrams with recvmmsg, answer those that DNSServer._simple
 * would answer, send the replies with sendmmsg, and hand every other
 * datagram back to Python with its address.
 *
 * Python stays the reference. This file repeats _simple's steps exactly
 * (simple_question, the lower-cased key, AnswerTable.get then .negative,
 * Prebuilt.reply or NegativeForm.reply, the UDP size check) and gives back
 * untouched anything it is not sure of, which costs only speed.
 *
 * It reads the table's own dicts (pre-built and lazy replies) and the
 * index's Service views, not copies, so it sees every change Python makes;
 * the caller syncs the table before each call, as AnswerTable.get does.
 * What it answers is counted here (query type, rcode, latency bucket) and
 * taken by Python after each wake-up into the server's metrics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum {
    BATCH = 64,            /* datagrams per recvmmsg and sendmmsg */
    DATAGRAM_MAX = 65535,  /* what the Python path reads at most */
    REPLY_MAX = 4096,      /* larger replies are left to Python */
    KEY_MAX = 512,         /* longer questions are left to Python */
    HEADER = 12,
    HEAD_AFTER_ID = 10,    /* flags and counts */
    NAME_MAX_WIRE = 255,
    LABEL_MAX = 63,
    PLAIN_UDP = 512,
    OPT_SIZE = 11,
    NO_EDNS = -1,
    RCODES = 16,
    QTYPES_MAX = 32,
    BUCKETS_MAX = 32,
    POINTER = 0xC000,
    EMPTY = -2,
};

/* The receive and send buffers of one batch. */
typedef struct {
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec in_iov[BATCH], out_iov[BATCH];
    struct sockaddr_storage addr[BATCH];
    int rest[BATCH];  /* indexes of the datagrams left to Python */
    unsigned char reply[BATCH][REPLY_MAX];
    unsigned char data[BATCH][DATAGRAM_MAX];  /* only the pages a datagram fills get touched */
} Batch;

typedef struct {
    PyObject_HEAD
    PyObject *prebuilt, *lazy, *services;  /* the Python side's own dicts */
    PyTypeObject *prebuilt_type;
    long max_udp;
    /* The NXDOMAIN rule for names under `under` (svc.<zone>): its reply is
     * the query's header and question, then `neg_tail` with pointers to the
     * zone's name in the question at `neg_pointers`. */
    int negative;
    unsigned char under[KEY_MAX];
    Py_ssize_t under_len, zone_size, neg_tail_len, neg_opt_len, neg_pointers[3];
    unsigned char neg_heads[2][4][HEAD_AFTER_ID];  /* [edns][RD and CD bits] */
    unsigned char neg_tail[REPLY_MAX];
    /* What was answered since the last take(). */
    unsigned qtypes[QTYPES_MAX];
    int n_qtypes, n_bounds;
    double bounds[BUCKETS_MAX];
    unsigned long long requests[QTYPES_MAX + 1][RCODES];  /* [qtype slot][rcode] */
    unsigned long long buckets[BUCKETS_MAX + 1];
    double seconds;
    Batch *batch;
} Responder;

static PyObject *s_heads, *s_edns_heads, *s_tail, *s_edns_tail;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* the clock of time.perf_counter */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* wire.simple_question: where the question ends and the EDNS0 size, for one
 * question followed by nothing or by a bare OPT record of version 0. */
static int simple_question(const unsigned char *d, Py_ssize_t n, Py_ssize_t *qend, long *udp) {
    static const unsigned char one[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    static const unsigned char with_opt[8] = {0, 1, 0, 0, 0, 0, 0, 1};
    if (n < HEADER + 5 || (d[2] & 0xF8))
        return 0;
    if (memcmp(d + 4, one, 8) == 0) {
        *qend = n;
        *udp = NO_EDNS;
        return 1;
    }
    if (memcmp(d + 4, with_opt, 8) == 0 && n >= HEADER + 5 + OPT_SIZE
            && d[n - 11] == 0 && d[n - 10] == 0 && d[n - 9] == 41 && d[n - 5] == 0
            && d[n - 2] == 0 && d[n - 1] == 0) {
        *qend = n - OPT_SIZE;
        *udp = (d[n - 8] << 8) | d[n - 7];
        return 1;
    }
    return 0;
}

/* wire.udp_limit: RFC 6891 6.2.5, never below 512. */
static long udp_limit(long udp, long cap) {
    if (udp == NO_EDNS)
        return PLAIN_UDP;
    long size = udp < cap ? udp : cap;
    return size > PLAIN_UDP ? size : PLAIN_UDP;
}

/* The query's id, a reply header after it, the question as the client spelt it. */
static void put_head(unsigned char *out, const unsigned char *d, const unsigned char *head,
                     Py_ssize_t qend) {
    memcpy(out, d, 2);
    memcpy(out + 2, head, HEAD_AFTER_ID);
    memcpy(out + HEADER, d + HEADER, qend - HEADER);
}


/* Prebuilt.reply into `out`: its length, 0 when Python must answer, -1 on error. */
static Py_ssize_t prebuilt_reply(Responder *self, PyObject *form, const unsigned char *d,
                                 Py_ssize_t qend, int edns, int bits, Py_ssize_t limit,
                                 unsigned char *out) {
    if (Py_TYPE(form) != self->prebuilt_type)
        return 0;  /* a subclass might reply otherwise */
    PyObject *heads = PyObject_GetAttr(form, edns ? s_edns_heads : s_heads);
    if (heads == NULL)
        return -1;
    PyObject *tail = PyObject_GetAttr(form, edns ? s_edns_tail : s_tail);
    Py_ssize_t size = tail == NULL ? -1 : 0;
    if (tail == NULL || !PyTuple_CheckExact(heads) || PyTuple_GET_SIZE(heads) != 4
            || !PyBytes_CheckExact(tail))
        goto done;
    PyObject *head = PyTuple_GET_ITEM(heads, bits);
    Py_ssize_t tail_size = PyBytes_GET_SIZE(tail);
    if (!PyBytes_CheckExact(head) || PyBytes_GET_SIZE(head) != HEAD_AFTER_ID
            || qend + tail_size > limit)
        goto done;
    put_head(out, d, (const unsigned char *)PyBytes_AS_STRING(head), qend);
    memcpy(out + qend, PyBytes_AS_STRING(tail), tail_size);
    size = qend + tail_size;
done:
    Py_DECREF(heads);
    Py_XDECREF(tail);
    return size;
}

/* Whether the index has a Service (namespace, name): 1, 0, -1 on error; 2
 * when a byte is not ASCII, since the index lower-cases str, not bytes. */
static int has_service(Responder *self, const unsigned char *ns, Py_ssize_t ns_len,
                       const unsigned char *name, Py_ssize_t name_len) {
    for (Py_ssize_t i = 0; i < ns_len; i++)
        if (ns[i] & 0x80)
            return 2;
    for (Py_ssize_t i = 0; i < name_len; i++)
        if (name[i] & 0x80)
            return 2;
    PyObject *key = Py_BuildValue("(s#s#)", ns, ns_len, name, name_len);
    if (key == NULL)
        return -1;
    int found = PyDict_Contains(self->services, key);
    Py_DECREF(key);
    return found;
}

/* AnswerTable.negative then NegativeForm.reply, for the lower-cased `key`. */
static Py_ssize_t negative_reply(Responder *self, const unsigned char *key, Py_ssize_t key_len,
                                 const unsigned char *d, Py_ssize_t qend, int edns, int bits,
                                 Py_ssize_t limit, unsigned char *out) {
    Py_ssize_t under = self->under_len;
    if (!self->negative || key_len < under + 4 || key[key_len - 2] != 0 || key[key_len - 1] != 1
            || memcmp(key + key_len - 4 - under, self->under, under) != 0)
        return 0;
    /* The name's labels above svc.<zone>: the last two are namespace and name. */
    Py_ssize_t end = key_len - 4 - under, pos = 0, last = -1, before = -1;
    while (pos < end) {
        int length = key[pos];
        if (length == 0 || length > LABEL_MAX)
            return 0;
        before = last;
        last = pos;
        pos += length + 1;
    }
    if (pos != end || before < 0 || key_len - 4 > NAME_MAX_WIRE)
        return 0;
    int found = has_service(self, key + last + 1, end - last - 1, key + before + 1,
                            last - before - 1);
    if (found != 0)
        return found < 0 ? -1 : 0;
    Py_ssize_t tail = self->neg_tail_len + (edns ? self->neg_opt_len : 0);
    if (qend + tail > limit)
        return 0;
    put_head(out, d, self->neg_heads[edns][bits], qend);
    memcpy(out + qend, self->neg_tail, tail);
    /* The SOA's owner, MNAME and RNAME end in the zone's name inside the question. */
    unsigned pointer = POINTER | (unsigned)(qend - 4 - self->zone_size);
    for (int i = 0; i < 3; i++) {
        out[qend + self->neg_pointers[i]] = pointer >> 8;
        out[qend + self->neg_pointers[i] + 1] = pointer & 0xFF;
    }
    return qend + tail;
}

/* DNSServer._simple for UDP: the reply's length in `out`, 0 when Python
 * must answer, -1 on error; `qtype` is the question's type. */
static Py_ssize_t answer(Responder *self, const unsigned char *d, Py_ssize_t n,
                         unsigned char *out, unsigned *qtype) {
    Py_ssize_t qend;
    long udp;
    if (!simple_question(d, n, &qend, &udp) || qend - HEADER > KEY_MAX)
        return 0;
    Py_ssize_t key_len = qend - HEADER;
    unsigned char key[KEY_MAX];
    for (Py_ssize_t i = 0; i < key_len - 4; i++) {
        unsigned char c = d[HEADER + i];
        key[i] = c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;  /* bytes.lower: ASCII only */
    }
    memcpy(key + key_len - 4, d + qend - 4, 4);
    *qtype = (key[key_len - 4] << 8) | key[key_len - 3];
    int edns = udp != NO_EDNS, bits = (d[2] & 0x01) | ((d[3] >> 3) & 0x02);  /* RD, CD */
    long limit = udp_limit(udp, self->max_udp);
    if (limit > REPLY_MAX)
        limit = REPLY_MAX;

    PyObject *k = PyBytes_FromStringAndSize((const char *)key, key_len);
    if (k == NULL)
        return -1;
    PyObject *form = PyDict_GetItemWithError(self->prebuilt, k);
    if (form == NULL && !PyErr_Occurred())
        form = PyDict_GetItemWithError(self->lazy, k);
    Py_DECREF(k);
    if (form != NULL) {
        Py_INCREF(form);
        Py_ssize_t size = prebuilt_reply(self, form, d, qend, edns, bits, limit, out);
        Py_DECREF(form);
        return size;
    }
    if (PyErr_Occurred())
        return -1;
    return negative_reply(self, key, key_len, d, qend, edns, bits, limit, out);
}

static void count(Responder *self, unsigned qtype, int rcode, double seconds) {
    int slot = 0;
    while (slot < self->n_qtypes && self->qtypes[slot] != qtype)
        slot++;  /* n_qtypes: "other" */
    self->requests[slot][rcode]++;
    int bucket = 0;
    while (bucket < self->n_bounds && self->bounds[bucket] < seconds)
        bucket++;  /* bisect_left, as Histogram.observe */
    self->buckets[bucket]++;
    self->seconds += seconds;
}

/* The address as socket.recvfrom gives it, for sendto. */
static PyObject *address(const struct sockaddr_storage *addr) {
    char host[INET6_ADDRSTRLEN];
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo),
                             a->sin6_scope_id);
    }
    const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return Py_BuildValue("(si)", host, ntohs(a->sin_port));
}

/* Sends every reply it can; one the kernel refuses is dropped, as UDP allows. */
static void send_all(int fd, struct mmsghdr *msgs, int n) {
    int at = 0;
    while (at < n) {
        int sent = sendmmsg(fd, msgs + at, n - at, MSG_DONTWAIT);
        if (sent > 0)
            at += sent;
        else if (sent < 0 && errno == EINTR)
            continue;
        else
            at++;  /* sendmmsg fails on the first message it cannot send */
    }
}

/* One recvmmsg's worth: the replies sent, the rest appended to `rest`.
 * The number received (0 for an error left by an earlier send, such as an
 * ICMP port unreachable), EMPTY when nothing waits, -1 on error. */
static int serve_batch(Responder *self, int fd, int want, PyObject *rest) {
    Batch *b = self->batch;
    for (int i = 0; i < want; i++)
        b->in[i].msg_hdr.msg_namelen = sizeof b->addr[i];
    int got = recvmmsg(fd, b->in, want, MSG_DONTWAIT, NULL);
    if (got < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? EMPTY : 0;
    int replies = 0, left = 0;
    for (int i = 0; i < got; i++) {
        double start = now();
        unsigned qtype;
        Py_ssize_t size = answer(self, b->data[i], b->in[i].msg_len, b->reply[replies], &qtype);
        if (size < 0)
            PyErr_Clear();  /* Python answers it, or counts the error */
        if (size <= 0) {
            b->rest[left++] = i;
            continue;
        }
        struct msghdr *m = &b->out[replies].msg_hdr;
        m->msg_name = &b->addr[i];
        m->msg_namelen = b->in[i].msg_hdr.msg_namelen;
        b->out_iov[replies].iov_len = size;
        count(self, qtype, b->reply[replies][3] & 0x0F, now() - start);
        replies++;
    }
    send_all(fd, b->out, replies);
    for (int j = 0; j < left; j++) {
        int i = b->rest[j];
        PyObject *item = Py_BuildValue("(y#N)", b->data[i], (Py_ssize_t)b->in[i].msg_len,
                                       address(&b->addr[i]));
        if (item == NULL || PyList_Append(rest, item) < 0) {
            Py_XDECREF(item);
            return -1;
        }
        Py_DECREF(item);
    }
    return got;
}

static PyObject *Responder_serve(Responder *self, PyObject *args) {
    int fd, limit;
    if (!PyArg_ParseTuple(args, "ii:serve", &fd, &limit))
        return NULL;
    PyObject *rest = PyList_New(0);
    if (rest == NULL)
        return NULL;
    for (int done = 0; done < limit;) {
        int want = limit - done < BATCH ? limit - done : BATCH;
        int got = serve_batch(self, fd, want, rest);
        if (got == -1) {
            Py_DECREF(rest);
            return NULL;
        }
        if (got == EMPTY || (got > 0 && got < want))
            break;  /* the queue is drained: the next recvmmsg would find nothing */
        done += got > 0 ? got : 1;
    }
    return rest;
}

static PyObject *Responder_reply(Responder *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "reply() takes bytes");
        return NULL;
    }
    unsigned char out[REPLY_MAX];
    unsigned qtype;
    Py_ssize_t size = answer(self, (const unsigned char *)PyBytes_AS_STRING(arg),
                             PyBytes_GET_SIZE(arg), out, &qtype);
    if (size < 0)
        return NULL;
    if (size == 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)out, size);
}

static PyObject *Responder_take(Responder *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *requests = PyList_New(0), *buckets = PyList_New(self->n_bounds + 1);
    if (requests == NULL || buckets == NULL)
        goto error;
    for (int slot = 0; slot <= self->n_qtypes; slot++)
        for (int rcode = 0; rcode < RCODES; rcode++) {
            if (self->requests[slot][rcode] == 0)
                continue;
            PyObject *item = Py_BuildValue("(iiK)", slot, rcode, self->requests[slot][rcode]);
            if (item == NULL || PyList_Append(requests, item) < 0) {
                Py_XDECREF(item);
                goto error;
            }
            Py_DECREF(item);
        }
    for (int i = 0; i <= self->n_bounds; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(self->buckets[i]);
        if (n == NULL)
            goto error;
        PyList_SET_ITEM(buckets, i, n);
    }
    PyObject *taken = Py_BuildValue("(NNd)", requests, buckets, self->seconds);
    memset(self->requests, 0, sizeof self->requests);
    memset(self->buckets, 0, sizeof self->buckets);
    self->seconds = 0.0;
    return taken;
error:
    Py_XDECREF(requests);
    Py_XDECREF(buckets);
    return NULL;
}

/* Copies a bytes object of exactly `size` bytes (any size when -1) into `to`. */
static int copy_bytes(PyObject *from, unsigned char *to, Py_ssize_t max, Py_ssize_t size,
                      Py_ssize_t *length, const char *what) {
    if (!PyBytes_Check(from) || PyBytes_GET_SIZE(from) > max
            || (size >= 0 && PyBytes_GET_SIZE(from) != size)) {
        PyErr_Format(PyExc_ValueError, "bad %s", what);
        return -1;
    }
    memcpy(to, PyBytes_AS_STRING(from), PyBytes_GET_SIZE(from));
    if (length != NULL)
        *length = PyBytes_GET_SIZE(from);
    return 0;
}

/* NegativeForm.layout(): (heads, edns_heads, zone_size, (s1, s2, s3), opt);
 * its reply's tail is pointer s1 pointer s2 pointer s3, then opt with EDNS0. */
static int set_negative(Responder *self, PyObject *layout) {
    PyObject *heads[2], *segments, *opt;
    if (!PyArg_ParseTuple(layout, "O!O!nO!O!:negative", &PyTuple_Type, &heads[0], &PyTuple_Type,
                          &heads[1], &self->zone_size, &PyTuple_Type, &segments, &PyBytes_Type,
                          &opt))
        return -1;
    for (int edns = 0; edns < 2; edns++) {
        if (PyTuple_GET_SIZE(heads[edns]) != 4) {
            PyErr_SetString(PyExc_ValueError, "negative: four heads");
            return -1;
        }
        for (int bits = 0; bits < 4; bits++)
            if (copy_bytes(PyTuple_GET_ITEM(heads[edns], bits), self->neg_heads[edns][bits],
                           HEAD_AFTER_ID, HEAD_AFTER_ID, NULL, "negative head") < 0)
                return -1;
    }
    if (PyTuple_GET_SIZE(segments) != 3) {
        PyErr_SetString(PyExc_ValueError, "negative: three segments");
        return -1;
    }
    Py_ssize_t at = 0, length;
    for (int i = 0; i < 3; i++) {
        self->neg_pointers[i] = at;
        at += 2;
        if (copy_bytes(PyTuple_GET_ITEM(segments, i), self->neg_tail + at,
                       REPLY_MAX / 2 - at, -1, &length, "negative segment") < 0)
            return -1;
        at += length;
    }
    self->neg_tail_len = at;
    if (copy_bytes(opt, self->neg_tail + at, REPLY_MAX / 2, -1, &self->neg_opt_len,
                   "negative opt") < 0)
        return -1;
    self->negative = 1;
    return 0;
}

static int Responder_init(Responder *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"prebuilt", "lazy", "services", "prebuilt_type", "under",
                            "negative", "max_udp_size", "qtypes", "buckets", NULL};
    PyObject *prebuilt, *lazy, *services, *type, *under, *negative, *qtypes, *buckets;
    long max_udp;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!O!SOlOO:Responder", names,
                                     &PyDict_Type, &prebuilt, &PyDict_Type, &lazy, &PyDict_Type,
                                     &services, &PyType_Type, &type, &under, &negative, &max_udp,
                                     &qtypes, &buckets))
        return -1;
    if (copy_bytes(under, self->under, KEY_MAX, -1, &self->under_len, "under") < 0)
        return -1;
    self->negative = 0;
    if (negative != Py_None && set_negative(self, negative) < 0)
        return -1;
    self->max_udp = max_udp;
    PyObject *seq = PySequence_Fast(qtypes, "qtypes: a sequence");
    if (seq == NULL)
        return -1;
    self->n_qtypes = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && i < QTYPES_MAX; i++)
        self->qtypes[self->n_qtypes++] = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(seq, i));
    Py_ssize_t more = PySequence_Fast_GET_SIZE(seq) - self->n_qtypes;
    Py_DECREF(seq);
    seq = PySequence_Fast(buckets, "buckets: a sequence");
    if (seq == NULL)
        return -1;
    self->n_bounds = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq) && i < BUCKETS_MAX; i++)
        self->bounds[self->n_bounds++] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
    more += PySequence_Fast_GET_SIZE(seq) - self->n_bounds;
    Py_DECREF(seq);
    if (more > 0)  /* counted otherwise than the Python path would */
        PyErr_SetString(PyExc_ValueError, "more qtypes or buckets than the responder counts");
    if (PyErr_Occurred())
        return -1;
    if (self->batch == NULL) {
        Batch *b = self->batch = PyMem_RawCalloc(1, sizeof *b);
        if (b == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < BATCH; i++) {
            b->in_iov[i] = (struct iovec){.iov_base = b->data[i], .iov_len = DATAGRAM_MAX};
            b->in[i].msg_hdr = (struct msghdr){.msg_name = &b->addr[i], .msg_iov = &b->in_iov[i],
                                               .msg_iovlen = 1};
            b->out_iov[i].iov_base = b->reply[i];
            b->out[i].msg_hdr = (struct msghdr){.msg_iov = &b->out_iov[i], .msg_iovlen = 1};
        }
    }
    Py_INCREF(prebuilt);
    Py_INCREF(lazy);
    Py_INCREF(services);
    Py_INCREF(type);
    Py_XSETREF(self->prebuilt, prebuilt);
    Py_XSETREF(self->lazy, lazy);
    Py_XSETREF(self->services, services);
    Py_XSETREF(self->prebuilt_type, (PyTypeObject *)type);
    return 0;
}

static void Responder_dealloc(Responder *self) {
    Py_XDECREF(self->prebuilt);
    Py_XDECREF(self->lazy);
    Py_XDECREF(self->services);
    Py_XDECREF(self->prebuilt_type);
    PyMem_RawFree(self->batch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Responder_methods[] = {
    {"serve", (PyCFunction)Responder_serve, METH_VARARGS,
     "serve(fd, limit): answer up to limit datagrams waiting on the socket; "
     "the list of (data, address) left to Python."},
    {"reply", (PyCFunction)Responder_reply, METH_O,
     "reply(data): the reply serve would send to data, or None (nothing is counted)."},
    {"take", (PyCFunction)Responder_take, METH_NOARGS,
     "take(): ([(qtype slot, rcode, count)], bucket counts, seconds) since the last take."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ResponderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "netplane.dns._fastpath.Responder",
    .tp_doc = "Answers UDP queries from an answer table's own dicts.",
    .tp_basicsize = sizeof(Responder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Responder_init,
    .tp_dealloc = (destructor)Responder_dealloc,
    .tp_methods = Responder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "netplane.dns._fastpath",
    .m_doc = "The DNS server's compiled UDP fast path.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&ResponderType) < 0)
        return NULL;
    s_heads = PyUnicode_InternFromString("heads");
    s_edns_heads = PyUnicode_InternFromString("edns_heads");
    s_tail = PyUnicode_InternFromString("tail");
    s_edns_tail = PyUnicode_InternFromString("edns_tail");
    if (!s_heads || !s_edns_heads || !s_tail || !s_edns_tail)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ResponderType);
    if (PyModule_AddObject(m, "Responder", (PyObject *)&ResponderType) < 0) {
        Py_DECREF(&ResponderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
