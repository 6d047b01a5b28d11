/* Many threads that block often and long: N threads (argv[1]) each nanosleep(2 ms) in
 * sleepers_wait for argv[2] seconds. Prints "blocked <ns>": the summed blocked wall time of all
 * threads (ground truth). Enough spans per second to push a CPU over HP_OFFCPU_EXACT_BUDGET. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static double seconds = 3.0;
static long long blocked_total;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* A raw syscall: glibc's wrapper has no frame pointer, which would hide its caller. */
__attribute__((noinline)) void sleepers_wait(void)
{
    struct timespec d = {0, 2 * 1000 * 1000};
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_nanosleep), "D"(&d), "S"(0) : "rcx", "r11", "memory");
}

static void *sleeper(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "hp-many");
    long long blocked = 0;
    long long end = now_ns() + (long long)(seconds * 1e9);
    while (now_ns() < end) {
        long long t = now_ns();
        sleepers_wait();
        blocked += now_ns() - t;
    }
    pthread_mutex_lock(&lock);
    blocked_total += blocked;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 64;
    if (argc > 2)
        seconds = atof(argv[2]);
    pthread_t *threads = calloc(n, sizeof(*threads));
    for (int i = 0; i < n; i++)
        pthread_create(&threads[i], NULL, sleeper, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    printf("blocked %lld\n", blocked_total);
    return 0;
}
