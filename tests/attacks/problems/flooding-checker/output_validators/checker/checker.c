#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    static char line[4096];
    memset(line, 'x', sizeof line - 1);
    char path[4096];
    snprintf(path, sizeof path, "%sjudgemessage.txt", argc > 3 ? argv[3] : "./");
    FILE *msg = fopen(path, "w");
    for (int i = 0; i < 100000; i++) {
        fputs(line, stdout); fputs(line, stderr);
        if (msg) fputs(line, msg);
    }
    return 42;
}
