/* Threads that block in known functions for a measured wall time.
 * hp-sleeper: nanosleep(20 ms) in sleeper_wait; hp-reader: read() on a pipe in reader_wait, fed
 * every 10 ms by hp-feeder. Prints "<thread> <blocked_ns>" per thread at exit (ground truth). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static double seconds = 3.0;
static int fds[2];
static volatile int done;
static long long sleeper_blocked, reader_blocked;

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Raw syscalls: glibc's wrappers have no frame pointer, which would hide their caller. */
static inline __attribute__((always_inline)) long raw_syscall3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

__attribute__((noinline)) void sleeper_wait(void)
{
    struct timespec d = {0, 20 * 1000 * 1000};
    raw_syscall3(SYS_nanosleep, (long)&d, 0, 0);
}

__attribute__((noinline)) int reader_wait(char *buf)
{
    return (int)raw_syscall3(SYS_read, fds[0], (long)buf, 1);
}

static void *sleeper(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "hp-sleeper");
    long long end = now_ns() + (long long)(seconds * 1e9);
    while (now_ns() < end) {
        long long t = now_ns();
        sleeper_wait();
        sleeper_blocked += now_ns() - t;
    }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    char c;
    pthread_setname_np(pthread_self(), "hp-reader");
    for (;;) {
        long long t = now_ns();
        int n = reader_wait(&c);
        reader_blocked += now_ns() - t;
        if (n <= 0 || c == 'q')
            break;
    }
    return NULL;
}

static void *feeder(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "hp-feeder");
    long long end = now_ns() + (long long)(seconds * 1e9);
    struct timespec d = {0, 10 * 1000 * 1000};
    while (now_ns() < end) {
        nanosleep(&d, NULL);
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
    pthread_create(&a, NULL, sleeper, NULL);
    pthread_create(&b, NULL, reader, NULL);
    pthread_create(&c, NULL, feeder, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_join(c, NULL);
    printf("hp-sleeper %lld\nhp-reader %lld\n", sleeper_blocked, reader_blocked);
    return 0;
}
