#include <stdio.h>
/* Writes without end to the submission, which never reads it. */
int main(void) { for (;;) fputs("flood flood flood flood flood flood flood flood\n", stdout); }
