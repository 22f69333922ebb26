/* Spins forever: the judge must stop it and blame the checker, not the submission. */
int main(void) { volatile unsigned long n = 0; for (;;) n++; }
