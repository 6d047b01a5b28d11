/* Known CPU split across three call paths: path_a 50%, path_b 30%, path_c 20% of the spin work.
 * Usage: cpu_split SECONDS [ITERATIONS] (a fixed amount of work when ITERATIONS is given).
 * Built with frame pointers so every stack reaches main. */
#include <stdlib.h>
#include <time.h>

static volatile unsigned long sink;

/* A stack local keeps a frame (gcc 12 omits leaf frames that use no stack, hiding the caller). */
__attribute__((noinline)) void spin(long n)
{
    volatile unsigned long x[2] = {sink, 0};
    for (long i = 0; i < n; i++)
        x[0] = x[0] * 6364136223846793005UL + 1442695040888963407UL;
    sink = x[0];
}

__attribute__((noinline)) void path_a(void) { spin(100000); sink++; }
__attribute__((noinline)) void path_b(void) { spin(100000); sink++; }
__attribute__((noinline)) void path_c(void) { spin(100000); sink++; }

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    long iterations = argc > 2 ? atol(argv[2]) : 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long done = 1;; done++) {
        /* 5:3:2 in short interleaved chunks, so no sampling period can alias with one path. */
        path_a(); path_b(); path_a(); path_c(); path_a();
        path_b(); path_a(); path_c(); path_a(); path_b();
        if (iterations) {
            if (done >= iterations)
                break;
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds)
            break;
    }
    return 0;
}
