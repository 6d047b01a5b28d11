/* Frame shapes a CFI compiler must get right, linked into the no-frame-pointer test binaries:
 * a variable-length array (gcc addresses that frame from rbp even with -fomit-frame-pointer),
 * many callee-saved registers, and a tail of recursion. Not called: only the tables matter. */
#include <string.h>

__attribute__((noinline)) long vla_sum(int n, const char *src)
{
    char buf[n];
    memcpy(buf, src, (size_t)n);
    long s = 0;
    for (int i = 0; i < n; i++)
        s += buf[i];
    return s;
}

__attribute__((noinline)) long many_saved(long a, long b, long c, long d, long e, long f)
{
    long r = 0;
    for (long i = 0; i < a; i++)
        r += vla_sum((int)(b + i), (const char *)c) * d + e * f + i;
    return r;
}
