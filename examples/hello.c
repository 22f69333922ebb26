// Hello in C: warden run examples/hello.c
#include <stdio.h>

int main(void) {
    puts("hello from C");
    return 0;
}
