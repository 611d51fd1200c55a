/*
 * The container launcher in C: netplane/node/runtime/launcher.py (whose
 * docstring is the specification) without an interpreter to start and
 * modules to import, which cost each container some 40 ms of CPU. The same
 * command line (argparse's rules for this parser, its messages word for
 * word), the same set-up, messages and exit codes: 125 set-up failed, 126
 * command not executable, 127 command not found.
 * tests/unit/test_runtime_launcher.py and tests/integration/test_runtime.py
 * run the same checks against both.
 *
 * One case is left to the Python launcher: a container that needs a root of
 * its own (--root given and a bind target that does not exist on the node,
 * outside /run), rare and by far the longest set-up. That launcher is exec'd
 * with the same arguments before anything has changed, so it starts from
 * the same state as if the runtime had run it.
 *
 * Built by scripts/build-c.sh into the virtualenv; without the binary the
 * runtime runs the Python module.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define NOT_EXECUTABLE 126
#define NOT_FOUND 127

#define PROG "netplane-launcher"
#define USAGE "usage: " PROG " [options] -- CMD [ARGS...]\n"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define NETNS_DIR "/run/netns"
#define LAUNCHER_MODULE "netplane.node.runtime.launcher"
/*
 * The interpreter of the Python launcher, for the fallback: the runtime
 * (process.py's _spawn) sets it to the one it runs, beside PYTHONPATH.
 * Without it, the python3 beside this binary (where scripts/setup.sh puts
 * both: the virtualenv's bin).
 */
#define PYTHON_ENV "NETPLANE_PYTHON"

/* argparse's --help, as it prints it 80 columns wide (COLUMNS unset). */
static const char help[] =
	USAGE
	"\n"
	"options:\n"
	"  -h, --help           show this help message and exit\n"
	"  --netns NETNS        name of the pod's network namespace (/run/netns/NAME)\n"
	"  --hostname HOSTNAME  hostname inside the container\n"
	"  --ipc IPC            the pod's IPC namespace (a file bound to it)\n"
	"  --pid PID            'own' for a PID namespace of its own, or the pod's (a\n"
	"                       file)\n"
	"  --root ROOT          an empty folder to build the container's root in\n"
	"  --bind SRC:DST[:ro]\n"
	"  --env K=V\n"
	"  --cwd CWD            working directory of the command\n";

struct bind {
	char *source, *target;
	int readonly;
};

struct spec {
	/* NULL when not given; as in Python, an empty value counts as none. */
	const char *netns, *hostname, *ipc, *pid, *root, *cwd;
	struct bind *binds;
	int nbinds;
	char **env;             /* "KEY=VALUE" of the --env pairs, see env_set */
	int nenv;
	char **command;
};

static int given(const char *s)
{
	return s && *s;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p) {
		fputs(PROG ": out of memory\n", stderr);
		_exit(SETUP_FAILED);
	}
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fputs(PROG ": out of memory\n", stderr);
		_exit(SETUP_FAILED);
	}
	return s;
}

static _Noreturn void failf(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	_exit(code);
}

#define setup_failed(...) failf(SETUP_FAILED, "container set-up failed: " __VA_ARGS__)

/* ---- Python's words for things, which the messages quote ---- */

/*
 * repr() of a str, as Python writes it for text: the quotes chosen the same
 * way, backslashes before quotes and backslashes, escapes for control
 * characters; bytes from 0x80 up are copied, so UTF-8 text stays as it is.
 */
static char *repr(const char *s)
{
	char *out = xmalloc(4 * strlen(s) + 3), *p = out;
	char quote = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
	*p++ = quote;
	for (; *s; s++) {
		unsigned char c = *s;
		if (c == quote || c == '\\') {
			*p++ = '\\';
			*p++ = c;
		} else if (c == '\t') {
			p = stpcpy(p, "\\t");
		} else if (c == '\n') {
			p = stpcpy(p, "\\n");
		} else if (c == '\r') {
			p = stpcpy(p, "\\r");
		} else if (c < 0x20 || c == 0x7f) {
			p += sprintf(p, "\\x%02x", c);
		} else {
			*p++ = c;
		}
	}
	*p++ = quote;
	*p = 0;
	return out;
}

/* str() of the OSError Python raises for a call on a path. */
static char *os_error(int err, const char *path)
{
	return xasprintf("[Errno %d] %s: %s", err, strerror(err), repr(path));
}

/* ---- the command line, by argparse's rules for the Python parser ---- */

enum opt { O_HELP, O_NETNS, O_HOSTNAME, O_IPC, O_PID, O_ROOT, O_BIND, O_ENV, O_CWD };

/* In the order argparse holds them: "-h" and "--help" first, as it adds them. */
static const struct {
	const char *name;
	enum opt opt;
} options[] = {
	{"-h", O_HELP}, {"--help", O_HELP}, {"--netns", O_NETNS},
	{"--hostname", O_HOSTNAME}, {"--ipc", O_IPC}, {"--pid", O_PID},
	{"--root", O_ROOT}, {"--bind", O_BIND}, {"--env", O_ENV}, {"--cwd", O_CWD},
};
#define NOPTIONS ((int)(sizeof options / sizeof options[0]))
#define VALUE (-1)              /* an argument that is no option */
#define UNKNOWN (-2)            /* an option of no one's */

/* parse_args's own errors: the usage, then the message. */
static _Noreturn void usage_error(const char *message)
{
	fputs(USAGE, stderr);
	failf(SETUP_FAILED, "%s", message);
}

/* argparse's parser.error(): the usage, then "error: " and the message
 * (argparse exits 2; a runtime's own failure is 125 by convention). */
static _Noreturn void arg_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(USAGE PROG ": error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	_exit(SETUP_FAILED);
}

/* argparse's _negative_number_matcher: ^-\d+$|^-\d*\.\d+$ */
static int negative_number(const char *s)
{
	if (*s++ != '-')
		return 0;
	const char *digits = s;
	while (*s >= '0' && *s <= '9')
		s++;
	if (!*s)
		return s > digits;
	if (*s++ != '.' || !*s)
		return 0;
	while (*s >= '0' && *s <= '9')
		s++;
	return !*s;
}

/*
 * What argparse's _parse_optional makes of an argument: VALUE, UNKNOWN, or
 * the index of the option, with *explicit pointing at a value given in the
 * same argument ("--netns=NAME", or "-hX" for the short -h). Unique
 * prefixes of the long options count (allow_abbrev); an ambiguous one is an
 * error at once, as argparse looks at every argument before it takes any.
 */
static int classify(const char *arg, const char **explicit)
{
	*explicit = NULL;
	if (arg[0] != '-')
		return VALUE;
	for (int i = 0; i < NOPTIONS; i++)
		if (!strcmp(arg, options[i].name))
			return i;
	if (!arg[1])
		return VALUE;
	const char *eq = strchr(arg, '=');
	if (eq)
		for (int i = 0; i < NOPTIONS; i++)
			if (strlen(options[i].name) == (size_t)(eq - arg) &&
			    !strncmp(arg, options[i].name, eq - arg)) {
				*explicit = eq + 1;
				return i;
			}
	int matches[NOPTIONS], n = 0;
	const char *found = NULL;
	if (arg[1] == '-') {
		size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
		for (int i = 0; i < NOPTIONS; i++)
			if (!strncmp(options[i].name, arg, len))
				matches[n++] = i;
		found = eq ? eq + 1 : NULL;
	} else {
		for (int i = 0; i < NOPTIONS; i++)
			if (!strncmp(options[i].name, arg, 2) && !options[i].name[2]) {
				matches[n++] = i;   /* the short -h, the rest its argument */
				found = arg + 2;
			} else if (!strncmp(options[i].name, arg, strlen(arg))) {
				matches[n++] = i;
			}
	}
	if (n > 1) {
		size_t len = 0;
		for (int i = 0; i < n; i++)
			len += strlen(options[matches[i]].name) + 2;
		char *list = xmalloc(len + 1), *p = list;
		for (int i = 0; i < n; i++)
			p += sprintf(p, "%s%s", i ? ", " : "", options[matches[i]].name);
		arg_error("ambiguous option: %s could match %s", arg, list);
	}
	if (n == 1) {
		*explicit = found;
		return matches[0];
	}
	if (negative_number(arg) || strchr(arg, ' '))
		return VALUE;
	return UNKNOWN;
}

/* launcher.py's _bind: SRC:DST[:ro], split at the first colon. */
static void add_bind(struct spec *s, const char *text)
{
	const char *colon = strchr(text, ':');
	char *target = colon ? xstrndup(colon + 1, strlen(colon + 1)) : NULL;
	size_t n = target ? strlen(target) : 0;
	int readonly = n >= 3 && !strcmp(target + n - 3, ":ro");
	if (readonly)
		target[n - 3] = 0;
	if (!colon || colon == text || !*target)
		arg_error("argument --bind: --bind wants SRC:DST[:ro], got %s", repr(text));
	struct bind *b = &s->binds[s->nbinds++];
	b->source = xstrndup(text, colon - text);
	b->target = target;
	b->readonly = readonly;
}

/*
 * Sets KEY in an environment of "KEY=VALUE" strings: a key already there
 * keeps its place and takes the new value, a new one goes last, as a
 * Python dict does. *env must have room for one more.
 */
static void env_set(char **env, int *n, const char *key, size_t keylen, const char *value)
{
	char *pair = xasprintf("%.*s=%s", (int)keylen, key, value);
	for (int i = 0; i < *n; i++)
		if (!strncmp(env[i], key, keylen) && env[i][keylen] == '=') {
			env[i] = pair;
			return;
		}
	env[(*n)++] = pair;
}

/* launcher.py's _env_pair: KEY=VALUE, split at the first '='. */
static void add_env(struct spec *s, const char *text)
{
	const char *eq = strchr(text, '=');
	if (!eq || eq == text)
		arg_error("argument --env: --env wants KEY=VALUE, got %s", repr(text));
	env_set(s->env, &s->nenv, text, eq - text, eq + 1);
}

/* parse_args(): options before the first "--", the command after it. */
static void parse_args(int argc, char **argv, struct spec *s)
{
	int split = 1;
	while (split < argc && strcmp(argv[split], "--"))
		split++;
	if (split == argc)
		usage_error("missing '-- CMD': no command to run");
	if (split + 1 == argc)
		usage_error("empty command after '--'");
	s->command = argv + split + 1;

	int n = split - 1;
	char **args = argv + 1;
	int *kind = xmalloc((n + 1) * sizeof *kind);
	const char **explicit = xmalloc((n + 1) * sizeof *explicit);
	for (int i = 0; i < n; i++)
		kind[i] = classify(args[i], &explicit[i]);
	s->binds = xmalloc((n + 1) * sizeof *s->binds);
	s->env = xmalloc((n + 1) * sizeof *s->env);
	const char **extras = xmalloc((n + 1) * sizeof *extras);
	int nextras = 0;

	for (int i = 0; i < n; i++) {
		if (kind[i] == VALUE || kind[i] == UNKNOWN) {
			extras[nextras++] = args[i];
			continue;
		}
		enum opt opt = options[kind[i]].opt;
		if (opt == O_HELP) {
			if (explicit[i])
				arg_error("argument -h/--help: ignored explicit argument %s",
					  repr(explicit[i]));
			fputs(help, stdout);
			fflush(stdout);
			_exit(SETUP_FAILED);  /* argparse's exit 0, made 125 like the rest */
		}
		const char *value = explicit[i];
		if (!value) {
			if (i + 1 >= n || kind[i + 1] != VALUE)
				arg_error("argument %s: expected one argument", options[kind[i]].name);
			value = args[++i];
		}
		switch (opt) {
		case O_NETNS: s->netns = value; break;
		case O_HOSTNAME: s->hostname = value; break;
		case O_IPC: s->ipc = value; break;
		case O_PID: s->pid = value; break;
		case O_ROOT: s->root = value; break;
		case O_CWD: s->cwd = value; break;
		case O_BIND: add_bind(s, value); break;
		case O_ENV: add_env(s, value); break;
		case O_HELP: break;
		}
	}
	if (nextras) {
		fputs(USAGE PROG ": error: unrecognized arguments:", stderr);
		for (int i = 0; i < nextras; i++)
			fprintf(stderr, " %s", extras[i]);
		fputc('\n', stderr);
		_exit(SETUP_FAILED);
	}
}

/* exec_env(): PATH and HOME, HOSTNAME when given, then the --env pairs. */
static char **exec_env(const struct spec *s)
{
	char **env = xmalloc((s->nenv + 4) * sizeof *env);
	int n = 0;
	env[n++] = "PATH=" DEFAULT_PATH;
	env[n++] = "HOME=/root";
	if (given(s->hostname))
		env_set(env, &n, "HOSTNAME", 8, s->hostname);
	for (int i = 0; i < s->nenv; i++)
		env_set(env, &n, s->env[i], strchr(s->env[i], '=') - s->env[i],
			strchr(s->env[i], '=') + 1);
	env[n] = NULL;
	return env;
}

static const char *env_get(char **env, const char *key)
{
	size_t len = strlen(key);
	for (; *env; env++)
		if (!strncmp(*env, key, len) && (*env)[len] == '=')
			return *env + len + 1;
	return NULL;
}

/* ---- the fallback: a root of the container's own ---- */

static int under_run(const char *path)
{
	static const char *const runs[] = {"/run", "/var/run"};
	for (int i = 0; i < 2; i++) {
		size_t n = strlen(runs[i]);
		if (!strncmp(path, runs[i], n) && (path[n] == 0 || path[n] == '/'))
			return 1;
	}
	return 0;
}

/* needs_root(): a target missing on the node, outside the container's own /run. */
static int needs_root(const struct spec *s)
{
	struct stat st;
	for (int i = 0; i < s->nbinds; i++)
		if (lstat(s->binds[i].target, &st) && !under_run(s->binds[i].target))
			return 1;
	return 0;
}

static _Noreturn void python_launcher(int argc, char **argv)
{
	const char *python = getenv(PYTHON_ENV);
	if (!given(python)) {
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
		if (n < 0)
			setup_failed("%s", os_error(errno, "/proc/self/exe"));
		exe[n] = 0;
		python = xasprintf("%s/python3", dirname(exe));
	}
	char **args = xmalloc((argc + 4) * sizeof *args);
	args[0] = (char *)python;
	args[1] = "-S";         /* no site-packages scan: PYTHONPATH finds netplane */
	args[2] = "-m";
	args[3] = LAUNCHER_MODULE;
	memcpy(args + 4, argv + 1, argc * sizeof *args);  /* argv[argc] is NULL */
	execvp(python, args);
	setup_failed("the Python launcher (a root of the container's own): %s: %s",
		     python, strerror(errno));
}

/* ---- the container's set-up: launcher.py's enter_namespaces ---- */

static void do_mount(const char *source, const char *target, const char *fstype,
		     unsigned long flags, const char *data)
{
	if (mount(source, target, fstype, flags, data))
		setup_failed("mount %s on %s: %s", source ? source : "", target,
			     strerror(errno));
}

/* nsutil.setns(): the message is the OSError's the Python one raises, for
 * the caller to put in context. NULL on success. */
static char *join_ns(const char *path, int nstype)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return os_error(errno, path);
	int rc = setns(fd, nstype), err = errno;
	close(fd);
	if (rc)
		return xasprintf("[Errno %d] setns(%s): %s", err, path, strerror(err));
	return NULL;
}

/* enter_namespaces()'s first steps; their failures name the pod's netns. */
static void isolate(const struct spec *s)
{
	char *err = NULL;
	if (given(s->netns)) {
		/* Path(NETNS_DIR) / name: an absolute name stands for itself. */
		const char *path = s->netns[0] == '/' ? s->netns
			: xasprintf(NETNS_DIR "/%s", s->netns);
		err = join_ns(path, CLONE_NEWNET);
	}
	if (!err && given(s->ipc))
		err = join_ns(s->ipc, CLONE_NEWIPC);
	if (!err && unshare(CLONE_NEWNS | CLONE_NEWUTS))
		err = xasprintf("[Errno %d] unshare(<NsType.MOUNT|UTS: %d>): %s", errno,
				CLONE_NEWNS | CLONE_NEWUTS, strerror(errno));
	if (err)
		setup_failed("entering namespaces of pod netns %s: %s",
			     s->netns ? repr(s->netns) : "None", err);
	/* Without this our bind mounts would propagate back to the node's mounts. */
	do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/* os.makedirs(path, exist_ok=True), its errors named as Python names them. */
static void makedirs(const char *path)
{
	char *p = xstrndup(path, strlen(path));
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = 0;
	struct stat st;
	/* The missing parents, outermost first; one made meanwhile is fine. */
	for (char *slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = 0;
		if (stat(p, &st) && mkdir(p, 0777) && errno != EEXIST)
			setup_failed("%s", os_error(errno, p));
		*slash = '/';
	}
	if (mkdir(p, 0777) && !(stat(p, &st) == 0 && S_ISDIR(st.st_mode)))
		setup_failed("%s", os_error(errno, p));
}

/* _make_target(): a mount point inside the container's private /run. */
static void make_target(const char *path, int directory)
{
	if (directory) {
		makedirs(path);
		return;
	}
	char *parent = xstrndup(path, strlen(path));
	makedirs(dirname(parent));
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
	if (fd < 0)
		setup_failed("%s", os_error(errno, path));
	close(fd);
}

/*
 * _bind_all(): the pod's files and folders over their targets. A target
 * under /run (the service account folder) gets the container a private
 * /run, a tmpfs, so nothing is made on the node's own /run; the sources are
 * opened first because they may live under the /run that the tmpfs hides.
 */
static void bind_all(const struct spec *s)
{
	int *fds = xmalloc((s->nbinds + 1) * sizeof *fds);
	int private_run = 0;
	for (int i = 0; i < s->nbinds; i++) {
		fds[i] = open(s->binds[i].source, O_PATH | O_CLOEXEC);
		if (fds[i] < 0 && errno == ENOENT)
			setup_failed("bind source %s does not exist", s->binds[i].source);
		if (fds[i] < 0)
			setup_failed("%s", os_error(errno, s->binds[i].source));
		private_run |= under_run(s->binds[i].target);
	}
	if (private_run)
		do_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755");
	for (int i = 0; i < s->nbinds; i++) {
		const struct bind *b = &s->binds[i];
		if (under_run(b->target)) {
			struct stat st;
			make_target(b->target, fstat(fds[i], &st) == 0 && S_ISDIR(st.st_mode));
		}
		/* The open file, not the path: it may be under the hidden /run. */
		char source[32];
		snprintf(source, sizeof source, "/proc/self/fd/%d", fds[i]);
		do_mount(source, b->target, NULL, MS_BIND, NULL);
		if (b->readonly)
			do_mount(NULL, b->target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
	}
	for (int i = 0; i < s->nbinds; i++)
		close(fds[i]);
}

/* ---- the command: launcher.py's launch ---- */

/* os.path.join(dir, file) */
static char *path_join(const char *dir, const char *file)
{
	if (!*dir)
		return xstrndup(file, strlen(file));
	return xasprintf("%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", file);
}

/* An executable file (not a folder), as shutil.which checks one. */
static int runnable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && access(path, X_OK) == 0 && !S_ISDIR(st.st_mode);
}

/* shutil.which(cmd, path=PATH) is not None */
static int which(const char *cmd, const char *path)
{
	if (strchr(cmd, '/'))
		return runnable(cmd);
	if (!path || !*path)
		return 0;
	char *dirs = xstrndup(path, strlen(path));
	for (char *dir = dirs, *end; dir; dir = end) {
		end = strchr(dir, ':');
		if (end)
			*end++ = 0;
		if (runnable(path_join(dir, cmd)))
			return 1;
	}
	return 0;
}

/*
 * os.execvpe(file, argv, env): along the PATH of env, not ours; returns
 * the error Python would raise: the first that is neither ENOENT nor
 * ENOTDIR, else the last.
 */
static int exec_along_path(const char *file, char **argv, char **env)
{
	if (strchr(file, '/')) {
		execve(file, argv, env);
		return errno;
	}
	const char *path = env_get(env, "PATH");
	char *dirs = xstrndup(path, strlen(path));  /* exec_env always has one */
	int saved = 0, last = ENOENT;
	for (char *dir = dirs, *end; dir; dir = end) {
		end = strchr(dir, ':');
		if (end)
			*end++ = 0;
		execve(path_join(dir, file), argv, env);
		last = errno;
		if (!saved && errno != ENOENT && errno != ENOTDIR)
			saved = errno;
	}
	return saved ? saved : last;
}

int main(int argc, char **argv)
{
	struct spec s = {0};
	parse_args(argc, argv, &s);
	if (given(s.root) && needs_root(&s))
		python_launcher(argc, argv);

	isolate(&s);
	bind_all(&s);
	if (given(s.hostname) && sethostname(s.hostname, strlen(s.hostname)))
		setup_failed("[Errno %d] %s", errno, strerror(errno));
	if (given(s.cwd) && chdir(s.cwd))
		setup_failed("%s", os_error(errno, s.cwd));

	/*
	 * pid_wrapper(): util-linux's unshare forks the command into the new
	 * (or the joined) PID namespace, mounts it a /proc of that namespace
	 * and waits for it. A setns to a PID namespace takes effect for the
	 * children only, which unshare's fork makes.
	 */
	static char *own[] = {"unshare", "--pid", "--fork", "--mount-proc", "--"};
	static char *join[] = {"unshare", "--fork", "--mount-proc", "--"};
	char **wrapper = NULL;
	int nwrapper = 0;
	if (given(s.pid) && !strcmp(s.pid, "own")) {
		wrapper = own, nwrapper = 5;
	} else if (given(s.pid)) {
		char *err = join_ns(s.pid, CLONE_NEWPID);
		if (err)
			setup_failed("%s", err);
		wrapper = join, nwrapper = 4;
	}
	int ncommand = 0;
	while (s.command[ncommand])
		ncommand++;
	char **command = xmalloc((nwrapper + ncommand + 1) * sizeof *command);
	if (nwrapper)
		memcpy(command, wrapper, nwrapper * sizeof *command);
	memcpy(command + nwrapper, s.command, (ncommand + 1) * sizeof *command);

	char **env = exec_env(&s);
	const char *name = s.command[0];
	/* unshare would report a missing command itself, in its words. */
	if (strcmp(command[0], name) && !which(name, env_get(env, "PATH")))
		failf(NOT_FOUND, "%s: command not found", name);
	/* As the Python launcher leaves them (launch()): every signal at its
	 * default, whatever the agent's parent ignored; the C library refuses
	 * its reserved ones (32, 33), which stay as they are. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	int err = exec_along_path(command[0], command, env);
	if (err == ENOENT)
		failf(NOT_FOUND, "%s: command not found", name);
	if (err == EACCES || err == EPERM)
		failf(NOT_EXECUTABLE, "%s: permission denied", name);
	failf(NOT_EXECUTABLE, "%s: cannot execute: %s", name, strerror(err));
}
