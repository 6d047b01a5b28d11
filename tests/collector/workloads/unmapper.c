/* Code that comes and goes: dlopen a library, spin in it, dlclose it (its code unmapped), again,
 * for SECONDS. Usage: unmapper SECONDS LIBRARY. The library is built from unmap_lib.c. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double end = now() + (argc > 1 ? atof(argv[1]) : 5.0);
    while (now() < end) {
        void *h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "%s\n", dlerror());
            return 1;
        }
        void (*work)(long) = (void (*)(long))dlsym(h, "lib_work");
        work(3000000);
        dlclose(h);
    }
    return 0;
}
