/* Claims nothing the protocol knows: exits 0 (not 42 accepted, not 43 wrong answer). */
int main(void) { return 0; }
