/* Threads that block through their own functions and glibc's wrappers (no raw syscalls):
 * hp-napper: nap() -> clock_nanosleep(20 ms); hp-awaiter: await_input() -> read() on a pipe;
 * hp-writer: pause_writes() -> nanosleep(10 ms) between its writes to that pipe.
 * Usage: offcpu_glibc SECONDS [wait] (wait: block on a stdin line before starting, so a profiler
 * can get ready). Prints "<function> <blocked_ns>" per function at exit (ground truth, wall time
 * around the call).
 * Built both with and without frame pointers: glibc's wrappers have none either way. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double seconds = 3.0;
static int fds[2];
static long long nap_ns, await_ns, pause_ns;
static volatile int sink;

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

__attribute__((noinline)) void nap(void)
{
    struct timespec d = {0, 20 * 1000 * 1000};
    clock_nanosleep(CLOCK_MONOTONIC, 0, &d, NULL);
    sink++;  /* no tail call: nap stays on the stack */
}

__attribute__((noinline)) int await_input(char *buf)
{
    int n = (int)read(fds[0], buf, 1);
    sink++;
    return n;
}

__attribute__((noinline)) void pause_writes(void)
{
    struct timespec d = {0, 10 * 1000 * 1000};
    nanosleep(&d, NULL);
    sink++;
}

static void *napper(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "hp-napper");
    long long end = now_ns() + (long long)(seconds * 1e9);
    while (now_ns() < end) {
        long long t = now_ns();
        nap();
        nap_ns += now_ns() - t;
    }
    return NULL;
}

static void *awaiter(void *arg)
{
    (void)arg;
    char c;
    pthread_setname_np(pthread_self(), "hp-awaiter");
    for (;;) {
        long long t = now_ns();
        int n = await_input(&c);
        await_ns += now_ns() - t;
        if (n <= 0 || c == 'q')
            break;
    }
    return NULL;
}

static void *writer(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "hp-writer");
    long long end = now_ns() + (long long)(seconds * 1e9);
    while (now_ns() < end) {
        long long t = now_ns();
        pause_writes();
        pause_ns += now_ns() - t;
        if (write(fds[1], "x", 1) != 1)
            break;
    }
    if (write(fds[1], "q", 1) != 1)
        return NULL;
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t a, b, c;
    if (argc > 1)
        seconds = atof(argv[1]);
    if (pipe(fds) != 0)
        return 1;
    if (argc > 2) {
        char line[16];
        if (!fgets(line, sizeof(line), stdin))
            return 1;
    }
    pthread_create(&a, NULL, napper, NULL);
    pthread_create(&b, NULL, awaiter, NULL);
    pthread_create(&c, NULL, writer, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(c, NULL);
    printf("nap %lld\nawait_input %lld\npause_writes %lld\n", nap_ns, await_ns, pause_ns);
    return 0;
}
