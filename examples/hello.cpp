// Hello in C++ (C++20, libc++, no exceptions): warden run examples/hello.cpp
#include <iostream>
#include <string>

int main() {
    std::string language = "C++";
    std::cout << "hello from " << language << "\n";
}
