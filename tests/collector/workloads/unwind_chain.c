/* A known call chain without frame pointers, blocked in read(2) on stdin until it closes:
 * main -> outer -> middle (a variable-length array: its CFA is rbp-based) -> inner -> read.
 * Prints "ready" when blocked-to-be. Each call is followed by work, so none is a tail call. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile long sink;

__attribute__((noinline)) long inner(long n)
{
    char buf[64];
    ssize_t got = read(0, buf, sizeof buf);
    sink += got + n;
    return sink;
}

__attribute__((noinline)) long middle(int n)
{
    char vla[n];
    memset(vla, 1, (size_t)n);
    long r = inner(vla[n - 1]);
    sink += r + vla[0];
    return sink;
}

__attribute__((noinline)) long outer(int n)
{
    long r = middle(n * 2);
    sink += r;
    return sink * 3;
}

int main(int argc, char **argv)
{
    (void)argv;
    printf("ready\n");
    fflush(stdout);
    long r = outer(argc + 15);
    return (int)(r & 1);
}
