// Command router sends POST requests the way Turing's router calls an ensembler: Go's
// net/http client, kept-alive connections of the default transport (or a wider idle
// pool), a body of unknown length (so chunked, as the router's io.NopCloser makes it),
// headers set with Header.Set, and a per-request timeout. Standard library only.
//
// It sends from -concurrency goroutines until -duration has passed or -requests have
// been sent (without either: until its standard input closes, a test's way to stop
// it), then prints one JSON summary on standard output. Each failed request is classed
// by how far it got:
// "refused" never had a connection (nothing listened), "lost" had one (it reached the
// server's socket) and got no answer, "timeouts" got none within -timeout.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type options struct {
	url         string
	body        []byte
	concurrency int
	duration    time.Duration
	requests    int64
	timeout     time.Duration
	idlePerHost int
	progress    int64
	header      string
}

// outcome of one request, added up by the goroutine that sent it.
type tally struct {
	statuses  map[int]int64
	refused   int64
	lost      int64
	timeouts  int64
	errors    map[string]int64
	latencies []time.Duration // of answered requests
}

func newTally() *tally {
	return &tally{statuses: map[int]int64{}, errors: map[string]int64{}}
}

func main() {
	opts := parseFlags()
	client := newClient(opts)
	stop := make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }) }
	if opts.duration > 0 {
		time.AfterFunc(opts.duration, halt)
	}
	if opts.duration == 0 && opts.requests == 0 {
		go func() { // standard input closed: stop sending
			_, _ = io.Copy(io.Discard, os.Stdin)
			halt()
		}()
	}

	var sent, answered int64
	tallies := make([]*tally, opts.concurrency)
	var wg sync.WaitGroup
	started := time.Now()
	for i := range tallies {
		t := newTally()
		tallies[i] = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if opts.requests > 0 && atomic.AddInt64(&sent, 1) > opts.requests {
					halt()
					return
				}
				if send(client, opts, t) && opts.progress > 0 {
					if n := atomic.AddInt64(&answered, 1); n%opts.progress == 0 {
						fmt.Fprintf(os.Stderr, "answered %d\n", n)
					}
				}
			}
		}()
	}
	wg.Wait()
	report(tallies, time.Since(started))
}

func parseFlags() options {
	var o options
	var bodyFile, bodyText string
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8083/ensemble", "where to POST")
	flag.StringVar(&bodyFile, "body-file", "", "the request body, read from this file")
	flag.StringVar(&bodyText, "body", `{"request":{},"response":{"route_responses":[]}}`, "the request body")
	flag.IntVar(&o.concurrency, "concurrency", 16, "requests in flight (one goroutine each)")
	flag.DurationVar(&o.duration, "duration", 0, "stop after this long")
	flag.Int64Var(&o.requests, "requests", 0, "stop after this many requests (0: no limit)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.IntVar(&o.idlePerHost, "idle-per-host", 0,
		"idle connections kept per host (0: http.DefaultTransport's, which keeps 2)")
	flag.Int64Var(&o.progress, "progress", 0, "print \"answered N\" on stderr every N answers")
	flag.StringVar(&o.header, "header", "Turing-Req-Id", "a header set on every request (empty: none)")
	flag.Parse()
	o.body = []byte(bodyText)
	if bodyFile != "" {
		data, err := os.ReadFile(bodyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		o.body = data
	}
	if o.concurrency < 1 {
		fmt.Fprintln(os.Stderr, "-concurrency must be at least 1")
		os.Exit(2)
	}
	return o
}

// newClient is the router's client: http.DefaultClient, or with -idle-per-host a copy of
// the default transport that keeps more idle connections.
func newClient(o options) *http.Client {
	if o.idlePerHost <= 0 {
		return http.DefaultClient
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = o.idlePerHost
	transport.MaxIdleConnsPerHost = o.idlePerHost
	return &http.Client{Transport: transport}
}

// send makes one request; it reports whether it was answered.
func send(client *http.Client, o options, t *tally) bool {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	// io.NopCloser hides the length: the body goes chunked, as the router sends it.
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url,
		io.NopCloser(bytes.NewReader(o.body)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	request.Header.Set("Content-Type", "application/json")
	if o.header != "" {
		request.Header.Set(o.header, strconv.FormatInt(time.Now().UnixNano(), 36))
	}
	began := time.Now()
	response, err := client.Do(request)
	if err == nil {
		_, err = io.Copy(io.Discard, response.Body)
		response.Body.Close()
	}
	switch {
	case err == nil:
		t.statuses[response.StatusCode]++
		t.latencies = append(t.latencies, time.Since(began))
		return true
	case isTimeout(err):
		t.timeouts++
	case neverConnected(err):
		t.refused++
	default:
		t.lost++
	}
	t.errors[describe(err)]++
	return false
}

// neverConnected: the request failed dialling, so it never had a connection. Told from
// the error rather than by an httptrace hook, which the router does not have and which
// costs every request an allocation or two: any error after the dial (a write or read
// on the connection, an EOF, a reset) is not a dial error.
func neverConnected(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}

// describe drops what differs between otherwise equal errors (ports, addresses).
func describe(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Op + ": " + opErr.Err.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "EOF"
	}
	return err.Error()
}

func report(tallies []*tally, elapsed time.Duration) {
	total := newTally()
	for _, t := range tallies {
		for code, n := range t.statuses {
			total.statuses[code] += n
		}
		for message, n := range t.errors {
			total.errors[message] += n
		}
		total.refused += t.refused
		total.lost += t.lost
		total.timeouts += t.timeouts
		total.latencies = append(total.latencies, t.latencies...)
	}
	sort.Slice(total.latencies, func(i, j int) bool { return total.latencies[i] < total.latencies[j] })
	statuses := map[string]int64{}
	var answered int64
	for code, n := range total.statuses {
		statuses[strconv.Itoa(code)] = n
		answered += n
	}
	summary := map[string]any{
		"answered":   answered,
		"statuses":   statuses,
		"refused":    total.refused,
		"lost":       total.lost,
		"timeouts":   total.timeouts,
		"errors":     total.errors,
		"seconds":    elapsed.Seconds(),
		"per_second": float64(answered) / elapsed.Seconds(),
		"p50_us":     percentile(total.latencies, 0.50),
		"p99_us":     percentile(total.latencies, 0.99),
	}
	if err := json.NewEncoder(os.Stdout).Encode(summary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(q*float64(len(sorted)-1))].Microseconds())
}
