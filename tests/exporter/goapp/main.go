// A small Go service for soakwatch's heap-profile attribution tests: /leak keeps 64 KiB per
// request forever, /healthy allocates as much and lets it go; net/http/pprof serves the heap
// profile on the same listener. Prints "listening on ADDR" once it accepts connections.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"sync"
)

const chunk = 64 << 10

var (
	mu   sync.Mutex
	kept [][]byte
)

func keep(n int) []byte {
	buf := make([]byte, n) // the leaking line
	for i := range buf {
		buf[i] = 'L'
	}
	return buf
}

func leak(w http.ResponseWriter, r *http.Request) {
	buf := keep(chunk)
	mu.Lock()
	kept = append(kept, buf)
	total := len(kept)
	mu.Unlock()
	fmt.Fprintf(w, "kept %d\n", total)
}

func healthy(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = 'H'
	}
	fmt.Fprintf(w, "used %d\n", len(buf))
}

func gc(w http.ResponseWriter, r *http.Request) {
	runtime.GC()
	fmt.Fprintln(w, "ok")
}

func main() {
	addr := "127.0.0.1:0"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	http.HandleFunc("/leak", leak)
	http.HandleFunc("/healthy", healthy)
	http.HandleFunc("/gc", gc)
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	if err := http.Serve(listener, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
