/*
 * kernel-floor: what one small loopback TCP write costs on this machine, with no server
 * around it. A writer process sends one 404-byte message (a 300-byte payload's envelope
 * and frame header) to each of N sockets every 100 ms in a tight loop; a reader process
 * epoll-reads them and measures latency from each round's start, like signalhub-bench's
 * 10/s run. Rounds rotate over six ways of writing, and the writer's CPU time per send is
 * reported for each: send, write, writev (2 slices), sendmsg (2 slices), and io_uring
 * `send` submitted 512 at a time (plain and with registered files).
 *
 * This is the floor for "server CPU per delivery" at one write per delivery: a server
 * cannot do less kernel work per delivery with the same system calls.
 *
 *   apt-get install liburing-dev
 *   gcc -O2 -o /tmp/kernel-floor crates/bench/compare/kernel-floor.c -luring
 *   /tmp/kernel-floor 10000 300        # connections, rounds (every mode gets 1/6)
 *
 * Loopback only (127.0.0.1:18999, readers bound to 127.0.0.2+). Needs ~2N open files.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG 404
#define MODES 6
#define URING_BATCH 512

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void reader(struct sockaddr_in *server, int n, int rounds) {
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in src = {0};
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000002 + (i / 5000));
        if (bind(s, (void *)&src, sizeof src) || connect(s, (void *)server, sizeof *server)) {
            perror("reader connect");
            exit(1);
        }
        fcntl(s, F_SETFL, O_NONBLOCK);
        struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.fd = s};
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &e);
    }
    uint64_t total = (uint64_t)n * rounds, got = 0;
    uint64_t *lat = malloc(total * sizeof *lat);
    struct epoll_event ev[256];
    char buf[4096];
    double c0 = -1;
    while (got < total) {
        int k = epoll_wait(ep, ev, 256, 5000);
        if (k <= 0) {
            fprintf(stderr, "reader: timed out after %lu messages\n", (unsigned long)got);
            break;
        }
        if (c0 < 0) c0 = cpu_s();
        for (int j = 0; j < k; j++) {
            ssize_t r = read(ev[j].data.fd, buf, sizeof buf);
            for (ssize_t o = 0; o + MSG <= r; o += MSG) {
                uint64_t t;
                memcpy(&t, buf + o, 8);
                lat[got++] = now_ns() - t;
            }
        }
    }
    double c = cpu_s() - c0;
    qsort(lat, got, sizeof *lat, cmp);
    printf("{\"reader\":{\"messages\":%lu,\"latency_ms\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
           "\"cpu_us_per_message\":%.2f}}\n",
           (unsigned long)got, lat[got / 2] / 1e6, lat[got * 9 / 10] / 1e6, lat[got * 99 / 100] / 1e6,
           lat[got - 1] / 1e6, c * 1e6 / got);
    exit(0);
}

static ssize_t send_one(int mode, int fd, char *msg) {
    struct iovec iov[2] = {{msg, 4}, {msg + 4, MSG - 4}};
    struct msghdr h = {.msg_iov = iov, .msg_iovlen = 2};
    switch (mode) {
    case 0: return send(fd, msg, MSG, MSG_DONTWAIT | MSG_NOSIGNAL);
    case 1: return write(fd, msg, MSG);
    case 2: return writev(fd, iov, 2);
    default: return sendmsg(fd, &h, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
}

static void send_uring(struct io_uring *ring, int fixed, int *fds, int n, char *msg) {
    for (int i = 0; i < n;) {
        int batch = 0;
        for (; batch < URING_BATCH && i < n; batch++, i++) {
            struct io_uring_sqe *q = io_uring_get_sqe(ring);
            io_uring_prep_send(q, fixed ? i : fds[i], msg, MSG, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (fixed) q->flags |= IOSQE_FIXED_FILE;
        }
        io_uring_submit_and_wait(ring, batch);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            if (cqe->res != MSG) fprintf(stderr, "writer: io_uring send returned %d\n", cqe->res);
            seen++;
        }
        io_uring_cq_advance(ring, seen);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CONNECTIONS ROUNDS\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[1]), rounds = atoi(argv[2]), one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(0x7f000001);
    addr.sin_port = htons(18999);
    if (bind(l, (void *)&addr, sizeof addr) || listen(l, 4096)) {
        perror("listen");
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(l);
        reader(&addr, n, rounds);
    }
    int *fds = malloc(n * sizeof *fds);
    for (int i = 0; i < n; i++) {
        fds[i] = accept(l, 0, 0);
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    struct io_uring ring;
    if (io_uring_queue_init(2 * URING_BATCH, &ring, 0) || io_uring_register_files(&ring, fds, n)) {
        perror("io_uring");
        return 1;
    }
    usleep(500000);
    const char *names[MODES] = {"send", "write", "writev", "sendmsg", "io_uring", "io_uring_fixed"};
    double cpu[MODES] = {0};
    int count[MODES] = {0};
    char msg[MSG];
    memset(msg, 'x', MSG);
    uint64_t start = now_ns();
    for (int r = 0; r < rounds; r++) {
        uint64_t due = start + (uint64_t)r * 100000000ull, t;
        while ((t = now_ns()) < due) usleep((due - t) / 1000);
        memcpy(msg, &due, 8);
        int mode = r % MODES;
        double c0 = cpu_s();
        if (mode >= 4) {
            send_uring(&ring, mode == 5, fds, n, msg);
        } else {
            for (int i = 0; i < n; i++)
                if (send_one(mode, fds[i], msg) != MSG) fprintf(stderr, "writer: short write\n");
        }
        cpu[mode] += cpu_s() - c0;
        count[mode]++;
    }
    printf("{\"writer_cpu_us_per_send\":{");
    for (int m = 0; m < MODES; m++)
        printf("%s\"%s\":%.2f", m ? "," : "", names[m], count[m] ? cpu[m] * 1e6 / ((double)n * count[m]) : 0.0);
    printf("},\"connections\":%d,\"rounds\":%d}\n", n, rounds);
    waitpid(pid, 0, 0);
    return 0;
}
