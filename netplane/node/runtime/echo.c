/*
 * netplane/echo in C: the server of netplane/node/runtime/echo.py (whose
 * docstring is the specification) in one small process, instead of a
 * Python interpreter per pod. tests/unit/test_runtime_echo.py runs the same
 * checks against both, and compares their answers to the same raw requests
 * byte for byte (but for the Date).
 *
 * One epoll loop serves the TCP listener, the UDP socket, a signalfd for
 * SIGTERM and SIGINT, and every connection; a ?delay= (or /delay?ms=)
 * holds back its own connection only (a deadline, not a thread); a /burn
 * spins in the loop, so other connections wait for it as they wait on a
 * busy CPU; drand48() draws the requests ECHO_FAIL_RATE fails. Requests are
 * read as Python's http.server reads them: lines of at most 65536 bytes, at
 * most 100 header lines, HTTP/0.9 and 1.0 rules, the first header of a name
 * counts (/headers keeps them all, as email's parser reads them), errors
 * written as its send_error writes them.
 *
 * Built by scripts/build-c.sh into the virtualenv; without the binary
 * the runtime runs the Python module.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PORT 8080
#define MAX_DELAY 30.0
#define MAX_BURN_MS 10000.0
#define BURN_PATH "/burn"
#define DELAY_PATH "/delay"
#define STATUS_PREFIX "/status/"
#define HEADERS_PATH "/headers"
#define STATUS_EXPLAIN "Ask for /status/N with N a status code from 200 to 599"
#define MAX_LINE 65536          /* http.client._MAXLINE */
#define MAX_HEADERS 100         /* http.client._MAXHEADERS, the blank line included */
#define BACKLOG 1024            /* EchoServer.request_queue_size */
#define CHUNK 4096
#define SERVER "netplane-echo/1"

struct buf {
	char *p;
	size_t len, cap;
};

/* A header whose first occurrence decides something, as headers.get() does. */
enum header { H_NONE, H_ACCEPT, H_LENGTH, H_CONNECTION, H_EXPECT, H_OTHER };

struct value {                  /* a header's value: the text after ':' */
	char v[256];
	size_t n;
	int over;               /* longer than v */
	int folded;             /* continued on further lines */
};

struct field {                  /* a header kept for /headers */
	size_t at;              /* where its name starts in request.fields */
	size_t name_len;
	size_t value_len;       /* the value follows the name */
};

struct request {
	int lines;              /* lines read; 0 before the request line */
	int v09;                /* request_version is still HTTP/0.9 */
	int close;              /* close_connection */
	int ge11;               /* request_version >= "HTTP/1.1", as strings */
	int have_command;       /* self.command is set */
	char method;            /* 'G'et, 'P'ost, 'H'ead or 0 */
	char *command;          /* the command when unsupported, for the 501 */
	size_t command_len;
	double delay;
	double burn_ms;
	int status;             /* what /status/N asks for, else 200 */
	char *bad;              /* a /status/ path with no code: what follows it, for the 400 */
	size_t bad_len;
	int headers;            /* /headers: keep them, the first of each name */
	struct buf fields;      /* /headers: names and values, one after the other */
	struct buf spans;       /* /headers: a struct field each */
	int keep;               /* the last header was kept: its continuation too */
	int broken;             /* a line that is no header ended the headers */
	enum header cur;        /* what a continuation line extends */
	int seen[H_OTHER];
	int json;
	int fail;               /* ECHO_FAIL_RATE drew it: 503 */
	struct value length, connection, expect;
	long long body_left;    /* POST body still to drain; -1: until EOF */
};

enum state { HEAD, BODY, DELAY, WRITE };

struct conn {
	int fd;
	enum state state;
	unsigned events;
	char peer[INET_ADDRSTRLEN];
	struct buf in, out;
	size_t in_off, out_off;
	struct request rq;
	long served;
	int eof;
	long long due;          /* DELAY: CLOCK_MONOTONIC nanoseconds */
	struct conn *prev, *next;
};

static int ep, listener = -1, udp = -1, sigfd = -1;
static double fail_rate;        /* ECHO_FAIL_RATE */
static int draining, accept_paused;
static struct conn *conns;
static long nconns, ndelayed;
static char *text_prefix, *json_prefix;  /* the answer up to the client address */
static size_t text_prefix_len, json_prefix_len;
static struct conn listener_tag, udp_tag, signal_tag;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("netplane-echo: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("out of memory");
	return p;
}

static void put(struct buf *b, const void *data, size_t n)
{
	if (!n)
		return;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 < 256 ? 256 : (b->len + n) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static void putf(struct buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	put(b, tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- Python's notion of characters (request bytes are latin-1) ---- */

static int py_space(unsigned char c)
{
	return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0;
}

/* What int() and float() strip: no \x1c-\x1f, unlike str.split(). */
static int py_number_space(unsigned char c)
{
	return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xa0;
}

static int py_printable(unsigned char c)
{
	return (c >= 0x20 && c < 0x7f) || (c > 0xa0 && c != 0xad);
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* repr() of a latin-1 string. */
static void put_repr(struct buf *b, const char *s, size_t n)
{
	char quote = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
	put(b, &quote, 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c == quote || c == '\\')
			putf(b, "\\%c", c);
		else if (c == '\t')
			puts_(b, "\\t");
		else if (c == '\n')
			puts_(b, "\\n");
		else if (c == '\r')
			puts_(b, "\\r");
		else if (!py_printable(c))
			putf(b, "\\x%02x", c);
		else
			put(b, &c, 1);
	}
	put(b, &quote, 1);
}

/* html.escape(s, quote=False) of latin-1 text, encoded as UTF-8. */
static void put_html(struct buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c == '&')
			puts_(b, "&amp;");
		else if (c == '<')
			puts_(b, "&lt;");
		else if (c == '>')
			puts_(b, "&gt;");
		else if (c >= 0x80)
			putf(b, "%c%c", 0xc0 | c >> 6, 0x80 | (c & 0x3f));
		else
			put(b, &c, 1);
	}
}

/* int() of a header value: surrounding whitespace, a sign, '_' between
 * digits. Returns 0 when it is no integer. */
static int py_int(const char *s, size_t n, long long *out)
{
	while (n && py_number_space(*s))
		s++, n--;
	while (n && py_number_space(s[n - 1]))
		n--;
	int neg = 0;
	if (n && (*s == '+' || *s == '-'))
		neg = *s == '-', s++, n--;
	if (!n || !is_digit(*s) || !is_digit(s[n - 1]))
		return 0;
	long long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '_' && is_digit(s[i + 1]) && is_digit(s[i - 1]))
			continue;
		if (!is_digit(s[i]))
			return 0;
		v = v > (LLONG_MAX - 9) / 10 ? LLONG_MAX : v * 10 + (s[i] - '0');
	}
	*out = neg ? -v : v;
	return 1;
}

/* py_float() into CLEAN, which holds N + 1 bytes. */
static int parse_float(const char *s, size_t n, char *clean, double *out)
{
	size_t k = 0, i = 0;
	while (n && py_number_space(*s))
		s++, n--;
	while (n && py_number_space(s[n - 1]))
		n--;
	if (!n)
		return 0;
	if (s[0] == '+' || s[0] == '-')
		clean[k++] = s[i++];
	const char *word = s + i;
	size_t wn = n - i;
	if ((wn == 3 && !strncasecmp(word, "inf", 3)) ||
	    (wn == 8 && !strncasecmp(word, "infinity", 8)) ||
	    (wn == 3 && !strncasecmp(word, "nan", 3))) {
		memcpy(clean + k, word, wn);
		clean[k + wn] = 0;
		*out = strtod(clean, NULL);
		return 1;
	}
	int digits = 0, dot = 0, exp = 0, exp_digits = 0;
	for (; i < n; i++) {
		char c = s[i];
		if (is_digit(c)) {
			exp ? exp_digits++ : digits++;
		} else if (c == '_') {
			if (i == 0 || i + 1 >= n || !is_digit(s[i - 1]) || !is_digit(s[i + 1]))
				return 0;
			continue;
		} else if (c == '.' && !dot && !exp) {
			dot = 1;
		} else if ((c == 'e' || c == 'E') && !exp && digits) {
			exp = 1;
			if (i + 1 < n && (s[i + 1] == '+' || s[i + 1] == '-'))
				clean[k++] = c, c = s[++i];
		} else {
			return 0;
		}
		clean[k++] = c;
	}
	if (!digits || (exp && !exp_digits))
		return 0;
	clean[k] = 0;
	*out = strtod(clean, NULL);
	return 1;
}

/* float() of ASCII text (digits, '_' between digits, '.', an exponent,
 * inf, infinity, nan), surrounding whitespace allowed. */
static int py_float(const char *s, size_t n, double *out)
{
	char small[128];
	char *clean = n < sizeof small ? small : xrealloc(NULL, n + 1);
	int ok = parse_float(s, n, clean, out);
	if (clean != small)
		free(clean);
	return ok;
}

static int hexval(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* unquote(s.replace('+', ' ')) of a query value, as ASCII for float():
 * the two latin-1 spaces (raw, or as UTF-8 escapes) become ' ', any other
 * non-ASCII character a byte float() refuses. */
static size_t unquote(const char *s, size_t n, char *out, size_t cap)
{
	size_t k = 0;
	unsigned char bytes[3];
	for (size_t i = 0; i < n && k < cap; i++) {
		unsigned char c = s[i];
		if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			c = hexval(s[i + 1]) << 4 | hexval(s[i + 2]);
			i += 2;
			if (c == 0xc2 && i + 3 < n && s[i + 1] == '%' && hexval(s[i + 2]) >= 0 &&
			    hexval(s[i + 3]) >= 0) {
				bytes[0] = hexval(s[i + 2]) << 4 | hexval(s[i + 3]);
				if (bytes[0] == 0x85 || bytes[0] == 0xa0) {
					out[k++] = ' ';
					i += 3;
					continue;
				}
			}
			out[k++] = c < 0x80 ? (char)c : '\x01';
		} else if (c == '+' || c == 0x85 || c == 0xa0) {
			out[k++] = ' ';
		} else {
			out[k++] = c < 0x80 ? (char)c : '\x01';
		}
	}
	return k;
}

/* The first non-empty NAME field of the query of a request target, as a
 * number in [0, cap]; 0 when absent or bad. */
static double query_number(const char *path, size_t n, const char *want, double cap)
{
	const char *hash = memchr(path, '#', n);
	if (hash)
		n = hash - path;
	const char *q = memchr(path, '?', n);
	if (!q)
		return 0;
	const char *end = path + n;
	size_t want_len = strlen(want);
	for (const char *f = q + 1; f < end;) {
		const char *amp = memchr(f, '&', end - f);
		const char *fend = amp ? amp : end;
		const char *eq = memchr(f, '=', fend - f);
		if (eq && eq + 1 < fend) {
			char name[16], value[128];
			size_t nn = unquote(f, eq - f, name, sizeof name);
			if (nn == want_len && !memcmp(name, want, want_len)) {
				double d;
				size_t vn = unquote(eq + 1, fend - eq - 1, value, sizeof value);
				if (vn >= sizeof value || !py_float(value, vn, &d) || isnan(d))
					return 0;
				return d < 0 ? 0 : d > cap ? cap : d;
			}
		}
		f = fend + 1;
	}
	return 0;
}

/* The path of a request target, *LEN bytes: it ends at the first '?' or
 * '#' and starts past "scheme://host". */
static const char *path_of(const char *target, size_t n, size_t *len)
{
	size_t k = 0;
	while (k < n && target[k] != '?' && target[k] != '#')
		k++;
	const char *path = target;
	const char *sep = memmem(path, k, "://", 3);
	if (sep && !memchr(path, '/', sep - path)) {
		const char *rest = sep + 3, *stop = target + k;
		const char *slash = memchr(rest, '/', stop - rest);
		path = slash ? slash : stop;
		k = stop - path;
	}
	*len = k;
	return path;
}

static int path_is(const char *target, size_t n, const char *want)
{
	size_t len;
	const char *path = path_of(target, n, &len);
	return len == strlen(want) && !memcmp(path, want, len);
}

/* Seconds asked for with ?delay= and /delay?ms=, capped at MAX_DELAY. */
static double delay_of(const char *target, size_t n)
{
	double seconds = query_number(target, n, "delay", MAX_DELAY);
	if (path_is(target, n, DELAY_PATH)) {
		double ms = query_number(target, n, "ms", MAX_DELAY * 1000);
		seconds = seconds + ms / 1000 > MAX_DELAY ? MAX_DELAY : seconds + ms / 1000;
	}
	return seconds;
}

/* CPU milliseconds a /burn?ms=N asks for, capped; 0 for other paths. */
static double burn_of(const char *target, size_t n)
{
	if (!path_is(target, n, BURN_PATH))
		return 0;
	return query_number(target, n, "ms", MAX_BURN_MS);
}

/* What a request target asks for, as ask() in echo.py reads it: a bad
 * /status/ path gets its 400 at once, neither held nor burnt. */
static void ask(struct request *rq, const char *target, size_t n)
{
	size_t len, k = strlen(STATUS_PREFIX);
	const char *path = path_of(target, n, &len);
	rq->status = 200;
	if (len >= k && !memcmp(path, STATUS_PREFIX, k)) {
		const char *code = path + k;
		size_t cn = len - k;
		int v = cn == 3 && is_digit(code[0]) && is_digit(code[1]) && is_digit(code[2]) ?
			(code[0] - '0') * 100 + (code[1] - '0') * 10 + code[2] - '0' : 0;
		if (v < 200 || v > 599) {
			rq->status = 400;
			rq->bad = xrealloc(NULL, cn + 1);
			memcpy(rq->bad, code, cn);
			rq->bad_len = cn;
			return;
		}
		rq->status = v;
	}
	rq->headers = len == strlen(HEADERS_PATH) && !memcmp(path, HEADERS_PATH, len);
	rq->delay = delay_of(target, n);
	rq->burn_ms = burn_of(target, n);
}

/* Spins until this thread has used MS milliseconds of CPU. */
static void burn(double ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	long long until = ts.tv_sec * 1000000000LL + ts.tv_nsec + (long long)(ms * 1e6);
	do
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	while (ts.tv_sec * 1000000000LL + ts.tv_nsec < until);
}

/* ---- answers ---- */

/* http.HTTPStatus's phrases, as send_response() writes them (Python 3.11's,
 * the set-up's); a code without one gets an empty phrase. */
static const struct {
	int code;
	const char *phrase;
} phrases[] = {
	{200, "OK"}, {201, "Created"}, {202, "Accepted"},
	{203, "Non-Authoritative Information"}, {204, "No Content"},
	{205, "Reset Content"}, {206, "Partial Content"}, {207, "Multi-Status"},
	{208, "Already Reported"}, {226, "IM Used"}, {300, "Multiple Choices"},
	{301, "Moved Permanently"}, {302, "Found"}, {303, "See Other"},
	{304, "Not Modified"}, {305, "Use Proxy"}, {307, "Temporary Redirect"},
	{308, "Permanent Redirect"}, {400, "Bad Request"}, {401, "Unauthorized"},
	{402, "Payment Required"}, {403, "Forbidden"}, {404, "Not Found"},
	{405, "Method Not Allowed"}, {406, "Not Acceptable"},
	{407, "Proxy Authentication Required"}, {408, "Request Timeout"},
	{409, "Conflict"}, {410, "Gone"}, {411, "Length Required"},
	{412, "Precondition Failed"}, {413, "Request Entity Too Large"},
	{414, "Request-URI Too Long"}, {415, "Unsupported Media Type"},
	{416, "Requested Range Not Satisfiable"}, {417, "Expectation Failed"},
	{418, "I'm a Teapot"}, {421, "Misdirected Request"},
	{422, "Unprocessable Entity"}, {423, "Locked"}, {424, "Failed Dependency"},
	{425, "Too Early"}, {426, "Upgrade Required"}, {428, "Precondition Required"},
	{429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
	{451, "Unavailable For Legal Reasons"}, {500, "Internal Server Error"},
	{501, "Not Implemented"}, {502, "Bad Gateway"}, {503, "Service Unavailable"},
	{504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
	{506, "Variant Also Negotiates"}, {507, "Insufficient Storage"},
	{508, "Loop Detected"}, {510, "Not Extended"},
	{511, "Network Authentication Required"}
};

static const char *reason(int code)
{
	for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
		if (phrases[i].code == code)
			return phrases[i].phrase;
	return "";
}

static void put_date(struct buf *b)
{
	char date[64];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	putf(b, "Server: %s\r\nDate: %s\r\n", SERVER, date);
}

/* A character as json.dumps() (ensure_ascii) writes it in a string. */
static void put_json_char(struct buf *b, unsigned cp)
{
	if (cp == '"' || cp == '\\')
		putf(b, "\\%c", cp);
	else if (cp == '\n')
		puts_(b, "\\n");
	else if (cp == '\r')
		puts_(b, "\\r");
	else if (cp == '\t')
		puts_(b, "\\t");
	else if (cp == '\b')
		puts_(b, "\\b");
	else if (cp == '\f')
		puts_(b, "\\f");
	else if (cp < 0x20 || cp > 0x7e) {
		if (cp >= 0x10000) {
			unsigned v = cp - 0x10000;
			putf(b, "\\u%04x\\u%04x", 0xd800 | (v >> 10), 0xdc00 | (v & 0x3ff));
		} else {
			putf(b, "\\u%04x", cp);
		}
	} else {
		char ch = (char)cp;
		put(b, &ch, 1);
	}
}

/* json.dumps() of a string (ensure_ascii): UTF-8 decoded, with undecodable
 * bytes as the surrogates os.environ gives them. */
static void put_json_string(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	put(b, "\"", 1);
	while (*p) {
		unsigned cp = *p, len = 1;
		if (cp >= 0x80) {
			unsigned need = cp >= 0xf0 && cp <= 0xf4 ? 4 : cp >= 0xe0 && cp <= 0xef ? 3 :
				cp >= 0xc2 && cp < 0xe0 ? 2 : 0;
			unsigned v = need == 4 ? cp & 7 : need == 3 ? cp & 15 : cp & 31;
			unsigned i = 1;
			for (; need && i < need && (p[i] & 0xc0) == 0x80; i++)
				v = v << 6 | (p[i] & 0x3f);
			int ok = need && i == need && !(need == 3 && (v < 0x800 ||
				(v >= 0xd800 && v < 0xe000))) && !(need == 4 && (v < 0x10000 ||
				v > 0x10ffff));
			if (ok) {
				cp = v;
				len = need;
			} else {
				cp = 0xdc00 | *p;  /* surrogateescape */
			}
		}
		put_json_char(b, cp);
		p += len;
	}
	put(b, "\"", 1);
}

/* json.dumps() of latin-1 text, as the request's bytes are read. */
static void put_json_latin1(struct buf *b, const char *s, size_t n)
{
	put(b, "\"", 1);
	for (size_t i = 0; i < n; i++)
		put_json_char(b, (unsigned char)s[i]);
	put(b, "\"", 1);
}

/* httpbin's /headers as json.dumps() writes it: each value as
 * email's compat32 policy gives it, rstrip('\r\n') of the whole. */
static void render_headers(struct buf *b, const struct request *rq)
{
	const struct field *f = (const struct field *)rq->spans.p;
	size_t count = rq->spans.len / sizeof *f;
	puts_(b, "{\"headers\": {");
	for (size_t k = 0; k < count; k++) {
		const char *name = rq->fields.p + f[k].at, *v = name + f[k].name_len;
		size_t vn = f[k].value_len;
		while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n'))
			vn--;
		if (k)
			puts_(b, ", ");
		put_json_latin1(b, name, f[k].name_len);
		puts_(b, ": ");
		put_json_latin1(b, v, vn);
	}
	puts_(b, "}}\n");
}

static void render(struct buf *b, int json, const char *client)
{
	if (json) {
		put(b, json_prefix, json_prefix_len);
		putf(b, "%s\"}\n", client);
	} else {
		put(b, text_prefix, text_prefix_len);
		putf(b, "%s\n", client);
	}
}

/* BaseHTTPRequestHandler.send_error: the status line, headers and HTML
 * (no status line nor headers to an HTTP/0.9 request); closes after. */
static void send_error(struct conn *c, int code, const char *msg, size_t msg_len,
		       const char *explain)
{
	struct buf body = {0};
	struct request *rq = &c->rq;
	putf(&body, "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n"
	     "        <meta charset=\"utf-8\">\n        <title>Error response</title>\n"
	     "    </head>\n    <body>\n        <h1>Error response</h1>\n"
	     "        <p>Error code: %d</p>\n        <p>Message: ", code);
	put_html(&body, msg, msg_len);
	putf(&body, ".</p>\n        <p>Error code explanation: %d - ", code);
	put_html(&body, explain, strlen(explain));
	puts_(&body, ".</p>\n    </body>\n</html>\n");
	if (!rq->v09) {
		putf(&c->out, "HTTP/1.1 %d ", code);
		put(&c->out, msg, msg_len);
		puts_(&c->out, "\r\n");
		put_date(&c->out);
		putf(&c->out, "Connection: close\r\nContent-Type: text/html;charset=utf-8\r\n"
		     "Content-Length: %zu\r\n\r\n", body.len);
	}
	if (!(rq->have_command && rq->method == 'H'))
		put(&c->out, body.p, body.len);
	free(body.p);
	rq->close = 1;
	c->state = WRITE;
}

static void error_repr(struct conn *c, int code, const char *fmt_head, const char *s,
		       size_t n, const char *explain)
{
	struct buf msg = {0};
	puts_(&msg, fmt_head);
	put_repr(&msg, s, n);
	puts_(&msg, ")");
	send_error(c, code, msg.p, msg.len, explain);
	free(msg.p);
}

static void answer(struct conn *c)
{
	struct request *rq = &c->rq;
	int code = rq->fail ? 503 : rq->status;
	/* HTTP gives these no content; a 205 still says so with a length. */
	int content = code != 204 && code != 205 && code != 304;
	struct buf body = {0};
	int json = rq->json || (rq->headers && !rq->fail);
	if (rq->headers && !rq->fail)
		render_headers(&body, rq);
	else
		render(&body, rq->json, c->peer);
	if (!rq->v09) {
		putf(&c->out, "HTTP/1.1 %d %s\r\n", code, reason(code));
		put_date(&c->out);
		if (code == 205)
			puts_(&c->out, "Content-Length: 0\r\n");
		else if (content)
			putf(&c->out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
			     json ? "application/json" : "text/plain; charset=utf-8", body.len);
		if (draining) {
			puts_(&c->out, "Connection: close\r\n");
			rq->close = 1;
		}
		puts_(&c->out, "\r\n");
	}
	if (rq->method != 'H' && content)
		put(&c->out, body.p, body.len);
	free(body.p);
	c->state = WRITE;
}

/* ---- reading a request ---- */

static const char *value_text(struct value *v, size_t *n)
{
	/* rstrip('\r\n') of the whole (folded) value */
	while (v->n && (v->v[v->n - 1] == '\r' || v->v[v->n - 1] == '\n'))
		v->n--;
	*n = v->n;
	return v->v;
}

static int value_is(struct value *v, const char *word)
{
	size_t n;
	const char *s = value_text(v, &n);
	return !v->over && n == strlen(word) && !strncasecmp(s, word, n);
}

static void value_add(struct value *v, const char *s, size_t n)
{
	if (v->n + n > sizeof v->v) {
		v->over = 1;
		return;
	}
	memcpy(v->v + v->n, s, n);
	v->n += n;
}

static int request_line(struct conn *c, const char *line, size_t n)
{
	struct request *rq = &c->rq;
	const char *w[4];
	size_t wl[4];
	int words = 0;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n'))
		n--;
	for (size_t i = 0; i < n;) {
		while (i < n && py_space(line[i]))
			i++;
		if (i == n)
			break;
		size_t start = i;
		while (i < n && !py_space(line[i]))
			i++;
		if (words < 4) {
			w[words] = line + start;
			wl[words] = i - start;
		} else {
			w[3] = line + start;  /* the last word is the version */
			wl[3] = i - start;
		}
		words++;
	}
	rq->v09 = 1;
	rq->close = 1;
	if (!words)
		return -1;  /* nothing to answer: close */
	if (words >= 3) {
		const char *v = w[words > 4 ? 3 : words - 1];
		size_t vl = wl[words > 4 ? 3 : words - 1];
		long long num[2] = {0, 0};
		int ok = vl > 5 && !memcmp(v, "HTTP/", 5);
		const char *dot = ok ? memchr(v + 5, '.', vl - 5) : NULL;
		ok = dot && !memchr(dot + 1, '.', v + vl - dot - 1);
		for (int part = 0; ok && part < 2; part++) {
			const char *s = part ? dot + 1 : v + 5;
			size_t len = part ? (size_t)(v + vl - dot - 1) : (size_t)(dot - v - 5);
			ok = len > 0 && len <= 10;
			for (size_t i = 0; ok && i < len; i++)
				ok = is_digit(s[i]), num[part] = num[part] * 10 + s[i] - '0';
		}
		if (!ok) {
			error_repr(c, 400, "Bad request version (", v, vl,
				   "Bad request syntax or unsupported method");
			return 0;
		}
		if (num[0] > 1 || (num[0] == 1 && num[1] >= 1))
			rq->close = 0;
		if (num[0] >= 2) {
			struct buf msg = {0};
			puts_(&msg, "Invalid HTTP version (");
			put(&msg, v + 5, vl - 5);
			puts_(&msg, ")");
			send_error(c, 505, msg.p, msg.len, "Cannot fulfill request");
			free(msg.p);
			return 0;
		}
		/* request_version is the text: "HTTP/0.9" written out is 0.9 too */
		rq->v09 = vl == 8 && !memcmp(v, "HTTP/0.9", 8);
		int cmp = memcmp(v, "HTTP/1.1", vl < 8 ? vl : 8);
		rq->ge11 = cmp > 0 || (cmp == 0 && vl >= 8);
	}
	if (words < 2 || words > 3) {
		error_repr(c, 400, "Bad request syntax (", line, n,
			   "Bad request syntax or unsupported method");
		return 0;
	}
	if (words == 2) {
		rq->close = 1;
		if (wl[0] != 3 || memcmp(w[0], "GET", 3)) {
			error_repr(c, 400, "Bad HTTP/0.9 request type (", w[0], wl[0],
				   "Bad request syntax or unsupported method");
			return 0;
		}
	}
	rq->have_command = 1;
	if (wl[0] == 3 && !memcmp(w[0], "GET", 3))
		rq->method = 'G';
	else if (wl[0] == 4 && !memcmp(w[0], "POST", 4))
		rq->method = 'P';
	else if (wl[0] == 4 && !memcmp(w[0], "HEAD", 4))
		rq->method = 'H';
	else {
		rq->command = xrealloc(NULL, wl[0]);
		memcpy(rq->command, w[0], wl[0]);
		rq->command_len = wl[0];
	}
	ask(rq, w[1], wl[1]);
	return 1;
}

/* Keeps a header for /headers, unless one of its name (in any case) came
 * first; 1 when it did. V is its value past the spaces and tabs after ':'. */
static int field_add(struct request *rq, const char *name, size_t name_len, const char *v,
		     size_t vn)
{
	const struct field *f = (const struct field *)rq->spans.p;
	for (size_t k = 0; k < rq->spans.len / sizeof *f; k++)
		if (f[k].name_len == name_len && !strncasecmp(rq->fields.p + f[k].at, name, name_len))
			return 0;
	struct field add = {rq->fields.len, name_len, vn};
	put(&rq->fields, name, name_len);
	put(&rq->fields, v, vn);
	put(&rq->spans, &add, sizeof add);
	return 1;
}

/* A continuation line: the last header kept gets it whole. */
static void field_extend(struct request *rq, const char *line, size_t n)
{
	struct field *f = (struct field *)rq->spans.p;
	put(&rq->fields, line, n);
	f[rq->spans.len / sizeof *f - 1].value_len += n;
}

/* One line of the header block, as email's compat32 parser reads it: a
 * name of printable characters but ':' and space, then ':'; a line starting
 * with space or tab continues the last header; a Unix-from line, or one
 * with no name, is skipped; any other line ends the headers (the rest
 * would be the message body). */
static void email_line(struct request *rq, const char *line, size_t n)
{
	static const struct {
		const char *name;
		enum header h;
	} known[] = {{"accept", H_ACCEPT}, {"content-length", H_LENGTH},
		     {"connection", H_CONNECTION}, {"expect", H_EXPECT}};
	if (rq->broken)
		return;
	if (line[0] == ' ' || line[0] == '\t') {
		if (rq->keep)
			field_extend(rq, line, n);
		if (rq->cur == H_ACCEPT && memmem(line, n, "application/json", 16))
			rq->json = 1;
		struct value *v = rq->cur == H_LENGTH ? &rq->length :
			rq->cur == H_CONNECTION ? &rq->connection :
			rq->cur == H_EXPECT ? &rq->expect : NULL;
		if (v) {
			v->folded = 1;
			value_add(v, line, n);
		}
		return;
	}
	rq->keep = 0;
	if ((n >= 5 && !memcmp(line, "From ", 5)) || line[0] == ':') {
		rq->cur = H_NONE;  /* a Unix-from line, or no name: skipped */
		return;
	}
	size_t i = 0;
	while (i < n && line[i] != ':' && (unsigned char)line[i] > ' ' &&
	       (unsigned char)line[i] < 0x7f)
		i++;
	if (i == n || line[i] != ':') {
		rq->broken = 1;
		return;
	}
	const char *v = line + i + 1;
	size_t vn = n - i - 1;
	while (vn && (*v == ' ' || *v == '\t'))
		v++, vn--;
	if (rq->headers)
		rq->keep = field_add(rq, line, i, v, vn);
	rq->cur = H_OTHER;
	for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
		if (strlen(known[k].name) == i && !strncasecmp(line, known[k].name, i)) {
			if (rq->seen[known[k].h])
				return;  /* a later one of the same name: headers.get() ignores it */
			rq->seen[known[k].h] = 1;
			rq->cur = known[k].h;
		}
	}
	if (rq->cur == H_ACCEPT && memmem(v, vn, "application/json", 16))
		rq->json = 1;
	else if (rq->cur == H_LENGTH)
		value_add(&rq->length, v, vn);
	else if (rq->cur == H_CONNECTION)
		value_add(&rq->connection, v, vn);
	else if (rq->cur == H_EXPECT)
		value_add(&rq->expect, v, vn);
}

/* A header line as http.client reads it (up to '\n'): email's parser
 * also ends a line at a '\r' that no '\n' follows. */
static void header_line(struct request *rq, const char *line, size_t n)
{
	while (n) {
		size_t k = 0;
		while (k < n && !(line[k] == '\r' && k + 1 < n && line[k + 1] != '\n'))
			k++;
		k = k < n ? k + 1 : n;
		email_line(rq, line, k);
		line += k;
		n -= k;
	}
}

static void close_conn(struct conn *c);

enum step { WAIT, MOVED, CLOSED };

/* The headers are in: what BaseHTTPRequestHandler does next. */
static enum step headers_done(struct conn *c)
{
	struct request *rq = &c->rq;
	if (rq->seen[H_CONNECTION] && !rq->connection.folded) {
		if (value_is(&rq->connection, "close"))
			rq->close = 1;
		else if (value_is(&rq->connection, "keep-alive"))
			rq->close = 0;
	}
	if (rq->seen[H_EXPECT] && !rq->expect.folded && rq->ge11 &&
	    value_is(&rq->expect, "100-continue"))
		puts_(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
	if (!rq->method) {
		error_repr(c, 501, "Unsupported method (", rq->command, rq->command_len,
			   "Server does not support this operation");
		return MOVED;
	}
	rq->fail = drand48() < fail_rate;  /* 0 never, 1 always: drand48() < 1 */
	if (rq->method == 'P') {
		long long n = 0;
		size_t len;
		const char *s = value_text(&rq->length, &len);
		if (len && (rq->length.over || !py_int(s, len, &n))) {
			/* int() raised: no answer, but what is written (a 100
			 * Continue) goes out before the connection closes. */
			fprintf(stderr, "netplane-echo: invalid Content-Length from %s\n", c->peer);
			rq->close = 1;
			c->state = WRITE;
			return MOVED;
		}
		rq->body_left = n < 0 ? -1 : n;
		if (n) {
			c->state = BODY;
			return MOVED;
		}
	}
	c->state = DELAY;
	return MOVED;
}

/* Takes the next line of the request head; 0 when it is not there yet. */
static int next_line(struct conn *c, const char **line, size_t *n)
{
	char *start = c->in.p + c->in_off;
	size_t avail = c->in.len - c->in_off;
	char *nl = avail ? memchr(start, '\n', avail) : NULL;
	if (nl)
		*n = nl - start + 1;
	else if (avail > MAX_LINE)
		*n = MAX_LINE + 1;  /* readline(65537) got no end of line */
	else if (c->eof)
		*n = avail;  /* what readline() returns at the end */
	else
		return 0;
	*line = start;
	c->in_off += *n;
	return 1;
}

/* Reads the request head line by line, as parse_request() does. */
static enum step read_head(struct conn *c)
{
	struct request *rq = &c->rq;
	const char *line;
	size_t n;
	while (next_line(c, &line, &n)) {
		if (rq->lines++ == 0) {
			if (n > MAX_LINE) {
				send_error(c, 414, "Request-URI Too Long", 20, "URI is too long");
				return MOVED;
			}
			int r = n ? request_line(c, line, n) : -1;
			if (r < 0) {
				close_conn(c);  /* end of file, or a blank line */
				return CLOSED;
			}
			if (r == 0)
				return MOVED;  /* an error is on its way */
			continue;
		}
		if (n > MAX_LINE) {
			send_error(c, 431, "Line too long", 13,
				   "got more than 65536 bytes when reading header line");
			return MOVED;
		}
		if (rq->lines - 1 > MAX_HEADERS) {
			send_error(c, 431, "Too many headers", 16, "got more than 100 headers");
			return MOVED;
		}
		if (n == 0 || (n == 1 && line[0] == '\n') ||
		    (n == 2 && line[0] == '\r' && line[1] == '\n'))
			return headers_done(c);
		header_line(rq, line, n);
	}
	return WAIT;
}

/* ---- connections ---- */

static void watch(struct conn *c)
{
	unsigned want = 0;
	if ((c->state == HEAD || c->state == BODY) && !c->eof)
		want |= EPOLLIN;
	if (c->out.len > c->out_off)
		want |= EPOLLOUT;
	if (want != c->events) {
		struct epoll_event ev = {.events = want, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		c->events = want;
	}
}

static void free_request(struct request *rq)
{
	free(rq->command);
	free(rq->bad);
	free(rq->fields.p);
	free(rq->spans.p);
}

static void reset_request(struct conn *c)
{
	free_request(&c->rq);
	memset(&c->rq, 0, sizeof c->rq);
	c->state = HEAD;
	if (c->in_off == c->in.len) {
		c->in_off = c->in.len = 0;
		if (c->in.cap > CHUNK * 4) {
			free(c->in.p);
			c->in.p = NULL;
			c->in.cap = 0;
		}
	}
}

static void close_conn(struct conn *c)
{
	if (c->state == DELAY && c->due)
		ndelayed--;
	close(c->fd);
	free(c->in.p);
	free(c->out.p);
	free_request(&c->rq);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
	nconns--;
	if (accept_paused && listener >= 0) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener_tag};
		epoll_ctl(ep, EPOLL_CTL_MOD, listener, &ev);
		accept_paused = 0;
	}
}

/* Writes what is pending; 1 when all of it is out, -1 when closed. */
static int flush(struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
				 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			close_conn(c);
			return -1;
		}
		c->out_off += n;
	}
	c->out_off = c->out.len = 0;
	return 1;
}

/* Moves the connection on as far as its input (and the clock) allows. */
static void progress(struct conn *c)
{
	for (;;) {
		if (c->state == HEAD) {
			enum step r = read_head(c);
			if (r == CLOSED)
				return;
			if (r == WAIT)
				break;
		} else if (c->state == BODY) {
			size_t avail = c->in.len - c->in_off;
			size_t take = c->rq.body_left < 0 ||
				(unsigned long long)c->rq.body_left > avail ? avail :
				(size_t)c->rq.body_left;
			c->in_off += take;
			if (c->rq.body_left > 0)
				c->rq.body_left -= take;
			if (c->rq.body_left != 0 && !c->eof)
				break;
			c->state = DELAY;
		} else if (c->state == DELAY) {
			if (!c->due && c->rq.delay > 0) {
				c->due = now_ns() + (long long)(c->rq.delay * 1e9) + 1;
				ndelayed++;
				break;
			}
			if (c->due && now_ns() < c->due)
				break;
			if (c->due)
				ndelayed--;
			c->due = 0;
			if (c->rq.burn_ms > 0)
				burn(c->rq.burn_ms);
			if (c->rq.bad)
				error_repr(c, 400, "Bad status code (", c->rq.bad, c->rq.bad_len,
					   STATUS_EXPLAIN);
			else
				answer(c);
		} else {  /* WRITE */
			int r = flush(c);
			if (r < 0)
				return;
			if (r == 0)
				break;
			if (c->rq.close || draining) {
				shutdown(c->fd, SHUT_WR);
				close_conn(c);
				return;
			}
			c->served++;
			reset_request(c);
		}
	}
	/* A 100 Continue may be waiting to go out while the body comes in. */
	if (c->state != WRITE && c->out.len > c->out_off && flush(c) < 0)
		return;
	watch(c);
}

static void on_readable(struct conn *c)
{
	for (;;) {
		if (c->in.cap - c->in.len < CHUNK) {
			if (c->in_off) {
				memmove(c->in.p, c->in.p + c->in_off, c->in.len - c->in_off);
				c->in.len -= c->in_off;
				c->in_off = 0;
			}
			if (c->in.cap - c->in.len < CHUNK) {
				c->in.cap = c->in.cap ? c->in.cap * 2 : CHUNK;
				c->in.p = xrealloc(c->in.p, c->in.cap);
			}
		}
		ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			close_conn(c);
			return;
		}
		if (n == 0) {
			c->eof = 1;
			break;
		}
		c->in.len += n;
		if (c->in.len - c->in_off > MAX_LINE + CHUNK)
			break;  /* enough to tell a line too long */
	}
	progress(c);
}

static void add_conn(int fd, struct sockaddr_in *peer)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		die("out of memory");
	c->fd = fd;
	c->state = HEAD;
	inet_ntop(AF_INET, &peer->sin_addr, c->peer, sizeof c->peer);
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	nconns++;
	c->events = EPOLLIN;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void accept_all(void)
{
	for (;;) {
		struct sockaddr_in peer;
		socklen_t len = sizeof peer;
		int fd = accept4(listener, (struct sockaddr *)&peer, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			add_conn(fd, &peer);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Out of descriptors: accept again once a connection closes. */
			struct epoll_event ev = {.events = 0, .data.ptr = &listener_tag};
			epoll_ctl(ep, EPOLL_CTL_MOD, listener, &ev);
			accept_paused = 1;
		}
		return;
	}
}

static void serve_udp(void)
{
	char data[2048];
	struct sockaddr_in peer;
	for (;;) {
		socklen_t len = sizeof peer;
		if (recvfrom(udp, data, sizeof data, 0, (struct sockaddr *)&peer, &len) < 0)
			return;
		char client[INET_ADDRSTRLEN];
		struct buf b = {0};
		inet_ntop(AF_INET, &peer.sin_addr, client, sizeof client);
		render(&b, 0, client);
		sendto(udp, b.p, b.len, 0, (struct sockaddr *)&peer, len);
		free(b.p);
	}
}

/* http.Server.Shutdown: serve what is queued on the listener, close it,
 * close the idle kept-alive connections; the loop then runs until the
 * requests in flight are answered (each with Connection: close). */
static void drain(void)
{
	draining = 1;
	accept_all();
	close(listener);
	listener = -1;
	for (struct conn *c = conns, *next; c; c = next) {
		next = c->next;
		if (c->state == HEAD && c->served && c->rq.lines == 0 && c->in_off == c->in.len)
			close_conn(c);
	}
}

static int timeout_ms(void)
{
	if (!ndelayed)
		return -1;
	long long first = 0;
	for (struct conn *c = conns; c; c = c->next)
		if (c->state == DELAY && c->due && (!first || c->due < first))
			first = c->due;
	long long left = first - now_ns();
	return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

static void fire_timers(void)
{
	if (!ndelayed)
		return;
	long long now = now_ns();
	for (struct conn *c = conns, *next; c; c = next) {
		next = c->next;
		if (c->state == DELAY && c->due && c->due <= now)
			progress(c);
	}
}

/* ---- set-up ---- */

static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v ? v : "";
}

/* The share of HTTP requests to fail: ECHO_FAIL_RATE as float() reads
 * ASCII text (it reads other scripts' digits too), clamped to [0, 1]. */
static double fail_rate_of(const char *text)
{
	double rate;
	for (const char *p = text; *p; p++)
		if ((unsigned char)*p >= 0x80)
			return 0;
	if (!py_float(text, strlen(text), &rate) || isnan(rate))
		return 0;
	return rate < 0 ? 0 : rate > 1 ? 1 : rate;
}

static int listen_port(void)
{
	static const char *keys[] = {"PORT", "NETPLANE_CONTAINER_PORT"};
	for (int k = 0; k < 2; k++) {
		const char *v = env(keys[k]);
		size_t i = 0;
		while (v[i] && is_digit(v[i]))
			i++;
		if (i && !v[i]) {
			long port = 0;
			for (i = 0; v[i] && port <= 65535; i++)
				port = port * 10 + v[i] - '0';
			if (port > 65535)
				die("port %s out of range 0-65535", v);
			return (int)port;
		}
	}
	return DEFAULT_PORT;
}

static void identity(void)
{
	static const char *keys[][2] = {{"pod", "POD_NAME"}, {"ip", "POD_IP"},
					{"node", "NODE_NAME"}};
	struct buf text = {0}, json = {0};
	puts_(&json, "{");
	for (int i = 0; i < 3; i++) {
		putf(&text, "%s=", keys[i][0]);
		puts_(&text, env(keys[i][1]));
		puts_(&text, " ");
		putf(&json, "\"%s\": ", keys[i][0]);
		put_json_string(&json, env(keys[i][1]));
		puts_(&json, ", ");
	}
	puts_(&text, "client=");
	puts_(&json, "\"client\": \"");
	text_prefix = text.p, text_prefix_len = text.len;
	json_prefix = json.p, json_prefix_len = json.len;
}

static int bound(int type, struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (type == SOCK_STREAM)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)addr, sizeof *addr) < 0)
		die("bind %s port %d: %s", type == SOCK_STREAM ? "tcp" : "udp",
		    ntohs(addr->sin_port), strerror(errno));
	return fd;
}

static void add(int fd, struct conn *tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll: %s", strerror(errno));
}

/* `--dry-run PATH`: where it would listen, how long PATH would wait, how
 * much CPU it would burn, its status and the share of requests that fail. */
static int dry_run(const char *address, int port, const char *path)
{
	struct request rq = {0};
	ask(&rq, path, strlen(path));
	printf("listen %s:%d delay %g burn %g status %d fail %g\n", address, port, rq.delay,
	       rq.burn_ms, rq.status, fail_rate);
	free_request(&rq);
	return 0;
}

int main(int argc, char **argv)
{
	const char *address = *env("NETPLANE_ECHO_ADDRESS") ? env("NETPLANE_ECHO_ADDRESS") :
		"0.0.0.0";
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(listen_port())};
	if (inet_pton(AF_INET, address, &addr.sin_addr) != 1)
		die("NETPLANE_ECHO_ADDRESS %s is no IPv4 address", address);
	fail_rate = fail_rate_of(env("ECHO_FAIL_RATE"));
	if (argc == 3 && !strcmp(argv[1], "--dry-run"))
		return dry_run(address, ntohs(addr.sin_port), argv[2]);
	identity();
	struct timespec seed;
	clock_gettime(CLOCK_REALTIME, &seed);
	srand48(seed.tv_sec ^ seed.tv_nsec ^ (long)getpid() << 16);

	/* As many connections as the hard limit allows (a thread each in Python). */
	struct rlimit lim;
	if (!getrlimit(RLIMIT_NOFILE, &lim)) {
		lim.rlim_cur = lim.rlim_max;
		setrlimit(RLIMIT_NOFILE, &lim);
	}
	/* PID 1 of its namespace gets only the signals it handles. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sigfd < 0 || ep < 0)
		die("set-up: %s", strerror(errno));

	udp = bound(SOCK_DGRAM, &addr);
	listener = bound(SOCK_STREAM, &addr);
	if (listen(listener, BACKLOG) < 0)
		die("listen: %s", strerror(errno));
	add(sigfd, &signal_tag);
	add(udp, &udp_tag);
	add(listener, &listener_tag);
	printf("netplane/echo listening on %s:%d (tcp, udp)\n", address, ntohs(addr.sin_port));
	fflush(stdout);

	struct epoll_event events[64];
	while (!draining || nconns) {
		int n = epoll_wait(ep, events, 64, timeout_ms());
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			struct conn *tag = events[i].data.ptr;
			if (tag == &signal_tag) {
				struct signalfd_siginfo si;
				while (read(sigfd, &si, sizeof si) == sizeof si)
					;
				if (!draining)
					drain();
				break;  /* the events left may name connections drain() closed */
			} else if (tag == &listener_tag) {
				if (listener >= 0)
					accept_all();
			} else if (tag == &udp_tag) {
				serve_udp();
			} else if (events[i].events & (EPOLLERR | EPOLLHUP) &&
				   !(events[i].events & (EPOLLIN | EPOLLOUT))) {
				close_conn(tag);
			} else if (events[i].events & EPOLLIN) {
				on_readable(tag);
			} else {
				progress(tag);
			}
		}
		fire_timers();
	}
	printf("netplane/echo: stopped after finishing the requests in flight\n");
	fflush(stdout);
	return 0;
}
