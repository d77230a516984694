/*
 * sflow's native client for the drop-in commands (sbatch, squeue, scancel, sacct,
 * sinfo, scontrol): one binary, installed under each command's name.
 *
 * A Python shim pays CPython's start-up (tens of milliseconds) for a command that
 * then works for a few. This program sends what the shim's process would have had
 * (argv, environment, working directory, which standard streams are terminals) to
 * the user's running controller, which runs the command's own Python code, and
 * writes back what the command wrote and exits with its code. Parsing, rendering
 * and every rule stay in Python (sflow/cli/served.py).
 *
 * Whenever that cannot be done the same way (no controller running, a state
 * directory whose socket path is too long, a socket or a listener that is not this
 * user's own, any failure, or the controller answering "shim"), it executes the
 * Python shim with the same argv, so what a command does never depends on the way
 * it ran. Nothing is sent before the socket file and the process listening on it
 * are known to be this user's (lstat, then SO_PEERCRED).
 *
 * C99 and libc only. Build: cc -O2 -DSFLOW_PYTHON='"/path/to/python3"' -o sflow-client sflow-client.c
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SFLOW_PYTHON
#define SFLOW_PYTHON "python3"
#endif

extern char **environ;

/* sflow/queue/paths.py: beyond this many bytes the socket lives elsewhere (the shim finds it). */
#define MAX_SOCKET_PATH 100

static const char *COMMANDS[] = {"sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol", NULL};

static char *command;
static char **args;
static int nargs;

/* sflow/queue/client.py: a submission resent under this token is the same submission. */
#define RESEND_TOKEN "SFLOW_RESEND_TOKEN"

/* ------------------------------------------------------------------ the Python shim */

static void run_shim(void) __attribute__((noreturn));
static void wait_again(void) __attribute__((noreturn));

/* The job this sbatch --wait submitted, once it is known: from then on, falling back means
 * waiting for it as the shim does (wait_again), never running sbatch, which would submit again. */
static long submitted_job;

/* The interpreter installed beside this program (a venv's or conda's bin/python3), else the one it
 * was built for: a wheel built once and installed into another environment falls back to its own. */
static const char *installed_python(void)
{
    static char path[4096];
    ssize_t len = readlink("/proc/self/exe", path, sizeof path - sizeof "python3");
    if (len > 0) {
        path[len] = '\0';
        char *slash = strrchr(path, '/');
        if (slash) {
            strcpy(slash + 1, "python3");
            if (access(path, X_OK) == 0)
                return path;
        }
    }
    return SFLOW_PYTHON;
}

static void run_shim(void)
{
    if (submitted_job)
        wait_again();
    char **argv = calloc((size_t)nargs + 5, sizeof *argv);
    const char *python = getenv("SFLOW_PYTHON");
    if (!python || !*python)
        python = installed_python();
    if (argv) {
        argv[0] = (char *)python;
        argv[1] = "-m";
        argv[2] = "sflow.cli.shims";
        argv[3] = command;
        for (int i = 0; i < nargs; i++)
            argv[4 + i] = args[i];
        argv[4 + nargs] = NULL;
        signal(SIGPIPE, SIG_DFL);
        execvp(python, argv);
    }
    fprintf(stderr, "%s: error: cannot run sflow's Python command (%s): %s\n", command, python, strerror(errno));
    exit(1);
}

static void wait_again(void)
{
    char id[32];
    const char *python = getenv("SFLOW_PYTHON");
    if (!python || !*python)
        python = installed_python();
    snprintf(id, sizeof id, "%ld", submitted_job);
    signal(SIGPIPE, SIG_DFL);
    execlp(python, python, "-m", "sflow.cli.shims", "--wait", id, (char *)NULL);
    fprintf(stderr, "%s: error: cannot run sflow's Python command (%s): %s\n", command, python, strerror(errno));
    exit(1);
}

/* ------------------------------------------------------------------ a growing buffer */

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void need(buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data)
        run_shim();
    b->data = data;
    b->cap = cap;
}

static void put(buf_t *b, const char *s, size_t n)
{
    need(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* sflow/cli/served.py WIRE: the version of the request's and the reply's shape. A controller of
 * another version is never mis-read: its reply runs the shim. */
#define WIRE "2"

/* Bytes as a JSON string of their base64: any bytes cross, and no UTF-8 is needed here. */
static void put_b64(buf_t *b, const unsigned char *s, size_t n)
{
    need(b, (n + 2) / 3 * 4 + 2);
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        *o++ = B64[s[i] >> 2];
        *o++ = B64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        *o++ = B64[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
        *o++ = B64[s[i + 2] & 63];
    }
    if (i < n) {
        *o++ = B64[s[i] >> 2];
        if (i + 1 < n) {
            *o++ = B64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
            *o++ = B64[(s[i + 1] & 15) << 2];
        } else {
            *o++ = B64[(s[i] & 3) << 4];
            *o++ = '=';
        }
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
}

/* ------------------------------------------------------------------ where the controller listens */

/* sflow/statedir.py home_path and sflow/queue/paths.py socket_path, or NULL: run the shim. */
static char *socket_file(void)
{
    const char *home = getenv("SFLOW_HOME");
    buf_t path = {0};
    if (home && *home) {
        puts_(&path, home);
    } else {
        const char *state = getenv("XDG_STATE_HOME");
        if (state && *state) {
            puts_(&path, state);
        } else {
            const char *user_home = getenv("HOME");
            if (!user_home) {
                struct passwd *pw = getpwuid(getuid());
                if (!pw)
                    return NULL;
                user_home = pw->pw_dir;
            }
            if (!*user_home)
                return NULL; /* Python's expanduser keeps "~" then: the shim knows */
            puts_(&path, user_home);
            if (path.data[path.len - 1] != '/')
                puts_(&path, "/");
            puts_(&path, ".local/state");
        }
        if (path.data[path.len - 1] != '/')
            puts_(&path, "/");
        puts_(&path, "sflow");
    }
    if (path.data[path.len - 1] != '/')
        puts_(&path, "/");
    puts_(&path, "ctl.sock");
    if (path.len > MAX_SOCKET_PATH) /* in /tmp under a hashed name: left to the shim */
        return NULL;
    return path.data;
}

static int connect_controller(void)
{
    char *path = socket_file();
    if (!path)
        return -1;
    struct stat st;
    /* Only a socket of this user's own, open to no one else, as the controller makes it. */
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
        return -1;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    /* The process listening must run as this user: nothing is sent to anyone else. */
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred || cred.uid != getuid()) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------------ the exchange */

static void request(buf_t *msg, const unsigned char *stdin_data, size_t stdin_len, int with_stdin)
{
    msg->len = 0;
    puts_(msg, "{\"op\": \"run\", \"wire\": " WIRE ", \"command\": \"");
    puts_(msg, command);
    puts_(msg, "\", \"argv\": [");
    for (int i = 0; i < nargs; i++) {
        if (i)
            puts_(msg, ", ");
        put_b64(msg, (const unsigned char *)args[i], strlen(args[i]));
    }
    puts_(msg, "], \"env\": [");
    for (char **e = environ; *e; e++) {
        if (e != environ)
            puts_(msg, ", ");
        put_b64(msg, (const unsigned char *)*e, strlen(*e));
    }
    puts_(msg, "], \"cwd\": ");
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        run_shim();
    put_b64(msg, (const unsigned char *)cwd, strlen(cwd));
    free(cwd);
    char tty[64];
    snprintf(tty, sizeof tty, ", \"tty\": [%d, %d, %d]", isatty(0), isatty(1), isatty(2));
    puts_(msg, tty);
    if (with_stdin) {
        puts_(msg, ", \"stdin\": ");
        put_b64(msg, stdin_data, stdin_len);
    }
    puts_(msg, "}\n");
}

/* All of it, through interruptions: to the socket without SIGPIPE (a controller gone is a fallback,
 * not a death), or to a file descriptor of ours. */
static int write_fully(int fd, const void *buf, size_t len, int to_socket)
{
    const char *data = buf;
    while (len) {
        ssize_t n = to_socket ? send(fd, data, len, MSG_NOSIGNAL) : write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_all(int fd, const char *data, size_t len)
{
    return write_fully(fd, data, len, 1);
}

/* What came from the controller: reply lines, each followed by the raw bytes it announces. Replies
 * are taken from it in order; what was read ahead of the one being taken stays for the next. */
static buf_t inbox;
static size_t taken;

/* At least `want` bytes in the inbox beyond those taken, or -1 (the controller went away). */
static int receive(int fd, size_t want, int flags)
{
    while (inbox.len - taken < want) {
        size_t room = want - (inbox.len - taken);
        if (room < 65536 && !(flags & MSG_WAITALL)) /* more is welcome, but never waited for */
            room = 65536;
        need(&inbox, room);
        ssize_t n = recv(fd, inbox.data + inbox.len, room, flags);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        inbox.len += (size_t)n;
        inbox.data[inbox.len] = 0;
    }
    return 0;
}

/* The next reply line (the controller's json.dumps: no newline inside), its newline made the end of
 * the string, or NULL. Valid until the next receive(). */
static char *read_line(int fd)
{
    size_t scanned = taken;
    for (;;) {
        char *newline = inbox.len > scanned ? memchr(inbox.data + scanned, '\n', inbox.len - scanned) : NULL;
        if (newline) {
            char *line = inbox.data + taken;
            *newline = 0;
            taken = (size_t)(newline - inbox.data) + 1;
            return line;
        }
        scanned = inbox.len;
        if (receive(fd, inbox.len - taken + 1, 0) != 0)
            return NULL;
    }
}

/* The non-negative integer after "key": in the line, or -1. */
static long long json_number(const char *line, const char *key)
{
    const char *at = strstr(line, key);
    if (!at)
        return -1;
    at += strlen(key);
    if (*at < '0' || *at > '9')
        return -1;
    char *end;
    errno = 0;
    long long value = strtoll(at, &end, 10);
    return errno ? -1 : value;
}

/* A reply that ran the command, of this client's shape. */
static int ran_here(const char *line)
{
    return line && strstr(line, "\"ran\": true") && json_number(line, "\"wire\": ") == atoi(WIRE);
}

static void read_stdin(buf_t *in)
{
    for (;;) {
        need(in, 65536);
        ssize_t n = read(0, in->data + in->len, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            run_shim(); /* nothing was sent that the shim would not send again */
        if (n == 0)
            return;
        in->len += (size_t)n;
    }
}

static int write_all(int fd, const unsigned char *data, size_t len)
{
    return write_fully(fd, data, len, 0);
}

/* The shim, given the standard input already read here, from a file in memory. */
static void shim_with_stdin(buf_t *in)
{
    int fd = memfd_create("stdin", 0);
    if (fd < 0 || write_all(fd, (unsigned char *)in->data, in->len) != 0 || lseek(fd, 0, SEEK_SET) != 0
        || dup2(fd, 0) < 0) {
        fprintf(stderr, "%s: error: cannot hand its standard input on: %s\n", command, strerror(errno));
        exit(1);
    }
    close(fd);
    run_shim();
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ')
        s++;
    return s;
}

/* The writes a "ran" reply announces (its "writes": [[fd, length], ...]), received whole: what was
 * cut short or malformed is a fallback before anything is written, never half of the output. */
typedef struct {
    int fd;
    size_t len;
} piece_t;

static piece_t *receive_writes(int fd, const char *line, size_t *count, const char **data)
{
    const char *w = strstr(line, "\"writes\": [");
    if (!w)
        run_shim();
    size_t n = 0, cap = 8, total = 0;
    piece_t *pieces = malloc(cap * sizeof *pieces);
    if (!pieces)
        run_shim();
    w = skip_ws(w + strlen("\"writes\": ["));
    while (*w == '[') {
        char *end;
        long to = strtol(w + 1, &end, 10);
        const char *q = skip_ws(end);
        if ((to != 1 && to != 2) || *q != ',')
            run_shim();
        q = skip_ws(q + 1);
        if (*q < '0' || *q > '9')
            run_shim();
        errno = 0;
        unsigned long long len = strtoull(q, &end, 10);
        if (errno || len > (1ULL << 40) || total + len > (1ULL << 40) || *skip_ws(end) != ']')
            run_shim();
        if (n == cap) {
            cap *= 2;
            pieces = realloc(pieces, cap * sizeof *pieces);
            if (!pieces)
                run_shim();
        }
        pieces[n++] = (piece_t){(int)to, (size_t)len};
        total += (size_t)len;
        w = skip_ws(skip_ws(end) + 1);
        if (*w == ',')
            w = skip_ws(w + 1);
    }
    if (*w != ']')
        run_shim();
    /* All of it before a byte is written: the bytes already read ahead, the rest in as few calls as
     * the kernel allows. */
    if (receive(fd, total, MSG_WAITALL) != 0)
        run_shim();
    *data = inbox.data + taken;
    taken += total;
    *count = n;
    return pieces;
}

/* The writes received, in order; the exit code given, or 1 if stdout's reader has gone. */
static int replay(const piece_t *pieces, size_t count, const char *data, int code)
{
    /* As the shim: a reader gone from stdout (squeue | head) is exit code 1, without a word. */
    signal(SIGPIPE, SIG_IGN);
    int stdout_gone = 0;
    for (size_t i = 0; i < count; i++) {
        const char *bytes = data;
        data += pieces[i].len;
        if (pieces[i].fd == 1 && stdout_gone)
            continue;
        if (write_all(pieces[i].fd, (const unsigned char *)bytes, pieces[i].len) != 0 && pieces[i].fd == 1) {
            stdout_gone = 1;
            code = 1;
        }
    }
    return code;
}

/* A whole reply that ran the command: its writes, then its exit code. */
static int finish(int fd, const char *line)
{
    long long code = json_number(line, "\"exit_code\": ");
    if (code < 0 || code > 255)
        run_shim();
    size_t count;
    const char *data;
    piece_t *pieces = receive_writes(fd, line, &count, &data);
    close(fd);
    return replay(pieces, count, data, (int)code);
}

/* sbatch --wait: the submission's output now, then the job's end in a second reply. Submitted already,
 * a lost controller is waited for as the shim's sbatch does, never submitted to again. */
static int wait_for_end(int fd, const char *line)
{
    long long job = json_number(line, "\"wait_for\": [");
    if (job <= 0)
        run_shim(); /* nothing was written yet: the controller owes nothing either */
    size_t count;
    const char *data;
    /* Until its output is here, the shim asks again under the same token: the same job, said once. */
    piece_t *pieces = receive_writes(fd, line, &count, &data);
    submitted_job = (long)job;
    if (replay(pieces, count, data, 0) != 0)
        return 1; /* as the shim: its stdout's reader gone, it exits before waiting */
    free(pieces);
    line = read_line(fd);
    if (!ran_here(line))
        wait_again();
    return finish(fd, line);
}

/* One token for this sbatch, whichever way it goes: the controller answers a submission it already
 * committed (it died before replying, and the shim asks again) with the same job, never a second. */
static void set_resend_token(void)
{
    unsigned char raw[12];
    char hex[2 * sizeof raw + 1];
    ssize_t got = getrandom(raw, sizeof raw, 0); /* one system call; a kernel without it: the device */
    if (got != (ssize_t)sizeof raw) {
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        got = fd >= 0 ? read(fd, raw, sizeof raw) : -1;
        if (fd >= 0)
            close(fd);
    }
    if (got != (ssize_t)sizeof raw) {
        unsetenv(RESEND_TOKEN); /* the shim makes its own */
        return;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    setenv(RESEND_TOKEN, hex, 1);
}

int main(int argc, char **argv)
{
    const char *name = strrchr(argv[0], '/');
    name = name ? name + 1 : argv[0];
    args = argv + 1;
    nargs = argc - 1;
    command = NULL;
    for (int i = 0; COMMANDS[i]; i++)
        if (strcmp(name, COMMANDS[i]) == 0)
            command = (char *)COMMANDS[i];
    if (!command) { /* sflow-client COMMAND ARGS... */
        if (argc < 2) {
            fprintf(stderr, "usage: sflow-client COMMAND [ARGS...]\n");
            return 2;
        }
        command = argv[1];
        args = argv + 2;
        nargs = argc - 2;
        int known = 0;
        for (int i = 0; COMMANDS[i]; i++)
            known |= strcmp(command, COMMANDS[i]) == 0;
        if (!known)
            run_shim(); /* srun, salloc...: the shim's own */
    }
    if (strcmp(command, "sbatch") == 0)
        set_resend_token();
    buf_t msg = {0}, in = {0};
    request(&msg, NULL, 0, 0); /* made first: the controller finds it there the moment it accepts */
    int fd = connect_controller();
    if (fd < 0)
        run_shim();
    char *line = NULL;
    if (send_all(fd, msg.data, msg.len) != 0 || !(line = read_line(fd)))
        run_shim();
    if (strstr(line, "\"need_stdin\": true")) {
        /* sbatch's script comes on stdin: read it only now that the command is known to read it. */
        read_stdin(&in);
        request(&msg, (const unsigned char *)in.data, in.len, 1);
        if (send_all(fd, msg.data, msg.len) != 0 || !(line = read_line(fd)))
            shim_with_stdin(&in);
    }
    if (!ran_here(line)) {
        close(fd);
        if (in.data)
            shim_with_stdin(&in);
        run_shim();
    }
    if (strstr(line, "\"more\": true"))
        return wait_for_end(fd, line);
    return finish(fd, line);
}
