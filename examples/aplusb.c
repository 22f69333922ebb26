// A+B: reads two integers from stdin and prints their sum.
//   warden run examples/aplusb.c --stdin examples/aplusb.in     prints 5
// Without two integers on stdin it says so on stderr and exits 1 (the guest's own code).
#include <stdio.h>

int main(void) {
    long long a, b;
    if (scanf("%lld %lld", &a, &b) != 2) {
        fputs("aplusb: expected two integers on stdin\n", stderr);
        return 1;
    }
    printf("%lld\n", a + b);
    return 0;
}
