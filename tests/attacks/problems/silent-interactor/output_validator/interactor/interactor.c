/* Never reads, never writes, never ends: the submission waits for a first line forever. */
int main(void) { volatile unsigned long n = 0; for (;;) n++; }
