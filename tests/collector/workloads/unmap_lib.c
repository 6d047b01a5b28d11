/* The library unmapper.c loads and unloads (built -shared -fPIC, no frame pointers). */
static volatile unsigned long sink;

__attribute__((noinline)) static void lib_spin(long n)
{
    unsigned long x = sink;
    for (long i = 0; i < n; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    sink = x;
}

void lib_work(long n)
{
    lib_spin(n);
    sink++;
}
