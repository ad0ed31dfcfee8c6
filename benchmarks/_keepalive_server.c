/* A keep-alive HTTP/1.1 server for the load benchmarks: one thread, epoll, a fixed reply to
 * every request head, requests counted, the server-side latency (request read -> reply
 * written) of each in a microsecond histogram. Optional stall: every PERIOD_MS, for STALL_MS,
 * requests are read and timed but answered only when the stall ends (a GC pause, a lock).
 * Control (not counted): GET /__stats -> "requests N\np50_us X\np99_us Y\nmax_us Z\n" over
 * the latencies since the last GET /__reset.  usage: server PORT [PERIOD_MS STALL_MS] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REPLY "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
#define HIST (1 << 22) /* microseconds, 4.2 s; slower is clamped */
typedef struct {
    int fd, match, control;
    int64_t *queued; size_t nq, cap; /* arrival times (us) of requests held by a stall */
    char *out; size_t out_len, out_cap;
} conn;
static uint32_t *hist; static uint64_t requests, hist_count, hist_max;
static int64_t started_us, period_us, stall_us;
static conn **conns; static int nconns_cap = 0; static int epfd;

static int64_t now_us(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
static int64_t stall_end(int64_t t) { /* end of the stall t falls in, or 0 */
    if (!stall_us) return 0;
    int64_t phase = (t - started_us) % period_us;
    return phase >= period_us - stall_us ? t - phase + period_us : 0;
}
static void record(int64_t us) {
    if (us < 0) us = 0;
    if (us >= HIST) us = HIST - 1;
    hist[us]++; hist_count++; if ((uint64_t)us > hist_max) hist_max = us;
}
static uint64_t quantile(double q) {
    uint64_t rank = (uint64_t)(q * hist_count + 0.999999), seen = 0;
    if (!hist_count) return 0;
    for (uint64_t i = 0; i < HIST; i++) { seen += hist[i]; if (seen >= rank) return i; }
    return hist_max;
}
static void flush_out(conn *c) {
    while (c->out_len) {
        ssize_t n = write(c->fd, c->out, c->out_len);
        if (n < 0) { if (errno == EAGAIN) break; c->out_len = 0; return; }
        memmove(c->out, c->out + n, c->out_len - n); c->out_len -= n;
    }
    struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}
static void send_bytes(conn *c, const char *data, size_t len) {
    if (!c->out_len) { ssize_t n = write(c->fd, data, len); if (n == (ssize_t)len) return;
        if (n < 0) { if (errno != EAGAIN) return; n = 0; } data += n; len -= n; }
    if (c->out_len + len > c->out_cap) { c->out_cap = (c->out_len + len) * 2; c->out = realloc(c->out, c->out_cap); }
    memcpy(c->out + c->out_len, data, len); c->out_len += len; flush_out(c);
}
static void answer(conn *c, int count, int64_t arrived, int64_t now) {
    static char buf[sizeof(REPLY) * 256]; static size_t rlen = sizeof(REPLY) - 1;
    while (count > 0) {
        int k = count > 256 ? 256 : count;
        for (int i = 0; i < k; i++) { memcpy(buf + i * rlen, REPLY, rlen); record(now - arrived); }
        send_bytes(c, buf, k * rlen); count -= k;
    }
}
static void close_conn(conn *c) {
    close(c->fd); conns[c->fd] = NULL; free(c->queued); free(c->out); free(c);
}
static void control(conn *c, const char *buf) {
    char body[256], reply[512];
    if (!strncmp(buf, "GET /__reset", 12)) { memset(hist, 0, HIST * sizeof(uint32_t)); hist_count = hist_max = 0; }
    int n = snprintf(body, sizeof body, "requests %llu\np50_us %llu\np99_us %llu\nmax_us %llu\ncount %llu\n",
        (unsigned long long)requests, (unsigned long long)quantile(0.5), (unsigned long long)quantile(0.99),
        (unsigned long long)hist_max, (unsigned long long)hist_count);
    int m = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", n, body);
    if (write(c->fd, reply, m) < 0) {}
    close_conn(c);
}
static void readable(conn *c, int64_t now) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf - 1);
        if (n == 0 || (n < 0 && errno != EAGAIN)) { close_conn(c); return; }
        if (n < 0) return;
        buf[n] = 0;
        if (c->control == 0) { c->control = !strncmp(buf, "GET /__", 7) ? 1 : -1; if (c->control == 1) { control(c, buf); return; } }
        int count = 0, m = c->match;
        static const char end[] = "\r\n\r\n";
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == end[m]) { if (++m == 4) { count++; m = 0; } }
            else m = buf[i] == '\r' ? 1 : 0;
        }
        c->match = m;
        if (!count) continue;
        requests += count;
        if (stall_end(now) || c->nq) {
            if (c->nq + count > c->cap) { c->cap = (c->nq + count) * 2; c->queued = realloc(c->queued, c->cap * sizeof(int64_t)); }
            for (int i = 0; i < count; i++) c->queued[c->nq++] = now;
        } else answer(c, count, now, now);
        if (n < (ssize_t)sizeof buf - 1) return;
    }
}
int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) { fprintf(stderr, "usage: %s PORT [PERIOD_MS STALL_MS]\n", argv[0]); return 2; }
    signal(SIGPIPE, SIG_IGN);
    hist = calloc(HIST, sizeof(uint32_t));
    if (argc == 4) { period_us = atoll(argv[2]) * 1000; stall_us = atoll(argv[3]) * 1000; }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 4096)) { perror("listen"); return 1; }
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev);
    started_us = now_us();
    struct epoll_event events[512];
    for (;;) {
        int64_t now = now_us(), end = stall_end(now);
        int timeout = end ? (int)((end - now) / 1000) + 1 : (stall_us ? (int)((period_us - stall_us - (now - started_us) % period_us) / 1000) + 1 : -1);
        int n = epoll_wait(epfd, events, 512, timeout);
        now = now_us();
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (fd >= nconns_cap) { int cap = fd * 2 + 64; conns = realloc(conns, cap * sizeof(conn *)); memset(conns + nconns_cap, 0, (cap - nconns_cap) * sizeof(conn *)); nconns_cap = cap; }
                    c = calloc(1, sizeof(conn)); c->fd = fd; conns[fd] = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) flush_out(c);
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(c, now);
        }
        if (stall_us && !stall_end(now)) { /* the stall is over: answer what it held */
            for (int fd = 0; fd < nconns_cap; fd++) {
                conn *c = conns[fd];
                if (c && c->nq) { for (size_t q = 0; q < c->nq; q++) answer(c, 1, c->queued[q], now); c->nq = 0; }
            }
        }
    }
}
