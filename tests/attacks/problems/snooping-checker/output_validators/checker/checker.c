#include <stdio.h>
int main(int argc, char **argv) {
    char path[4096], buf[4096] = "nothing";
    FILE *host = fopen("{CANARY_FILE}", "r");
    if (host) { size_t n = fread(buf, 1, sizeof buf - 1, host); buf[n] = 0; }
    snprintf(path, sizeof path, "%sjudgemessage.txt", argc > 3 ? argv[3] : "./");
    FILE *msg = fopen(path, "w");
    if (msg) { fputs(buf, msg); fclose(msg); }
    return host ? 42 : 43;
}
