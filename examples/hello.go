// Hello in Go (wasip1, standard library only): warden run examples/hello.go
package main

import "fmt"

func main() {
	fmt.Println("hello from Go")
}
