// Command ratebench measures how high a request rate each load generator holds, and at what CPU cost:
// our open-model engine (package loadtest) against vegeta's attacker, on loopback, one after the other
// against the same trivial HTTP server running as a separate process (so the server's CPU is not
// billed to the generator, and the generator's CPU is measured alone with getrusage).
//
// The target is a minimal raw HTTP/1.1 responder by default (-server raw) so the generators, not the
// server, run out of CPU first; -server nethttp uses a plain net/http server instead.
//
// A generator holds a rate when its successful responses per second of wall time (start of the attack
// to the last response) reach 99 % of the target. Each step is short and bounded (-step, default 5s),
// and a generator stops climbing after two rates in a row it could not hold. With -repeat N each rate
// gets up to N tries per generator (stopping at the first that holds): on a shared machine other work
// can only lower a generator's figures, so the best try is the fairest estimate.
//
//	go run ./loadtest/cmd/ratebench -rates 5000,10000,15000,20000,25000,30000 -step 5s
//
// It prints a Markdown table (docs/performance.md keeps the latest one).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/resilience-lab/lab/loadtest"
)

func main() {
	serve := flag.String("serve", "", "internal: run the target server of this kind and print its address")
	serverKind := flag.String("server", "raw", "target server: raw (minimal HTTP/1.1 responder) or nethttp (net/http)")
	rates := flag.String("rates", "5000,10000,15000,20000,25000,30000", "comma-separated target rates (requests/s), climbed in order")
	step := flag.Duration("step", 5*time.Second, "length of each run (at most 30s)")
	tools := flag.String("tools", "loadtest,vegeta", "generators to measure: loadtest, vegeta")
	maxInFlight := flag.Int("max-inflight", 10000, "in-flight cap for our engine (vegeta's workers are unbounded by default)")
	repeat := flag.Int("repeat", 1, "tries per rate and generator (1..5); a rate is held if any try held it, since a busy machine only ever lowers the figures")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole benchmark to this file")
	flag.Parse()
	if *serve != "" {
		if err := runServer(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "ratebench server:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ratebench:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if err := bench(*rates, *step, *tools, *maxInFlight, *serverKind, *repeat); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "ratebench:", err)
		os.Exit(2)
	}
}

// runServer runs the target until its stdin closes (the parent exited). kind "raw" is a minimal
// HTTP/1.1 responder (one goroutine per connection, a canned 200 for each request head read), so the
// generator, not the server, is what runs out of CPU; "nethttp" is a plain net/http server.
func runServer(kind string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	if kind == "nethttp" {
		body := []byte("ok\n")
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Write(body)
			}),
			ReadHeaderTimeout: 5 * time.Second,
			// The generators close their idle connections after each run; this is only a backstop. A
			// short idle timeout would close pooled connections between bursts within a run and make
			// the generators dial again and again.
			IdleTimeout: time.Minute,
		}
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go serveRaw(c)
	}
}

var rawResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")

// serveRaw answers each request head (bodiless GETs are all ratebench sends) with rawResponse until
// the client closes the connection or leaves it idle for a minute.
func serveRaw(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 { // the blank line ending the head
				break
			}
		}
		if _, err := c.Write(rawResponse); err != nil {
			return
		}
	}
}

// measurement is one generator at one rate.
type measurement struct {
	tool       string
	rate       int
	sent, ok   uint64
	wall       time.Duration
	p99        time.Duration
	cpu        time.Duration // generator process CPU (user+sys)
	serverCPU  time.Duration
	lagMax     time.Duration // ours only: how late the latest request was sent
	latencyRef string        // what p99 is measured from
}

func (m measurement) achieved() float64 { return float64(m.ok) / m.wall.Seconds() }

func (m measurement) held() bool { return m.achieved() >= 0.99*float64(m.rate) }

func bench(rateList string, step time.Duration, toolList string, maxInFlight int, serverKind string, repeat int) error {
	if repeat < 1 || repeat > 5 {
		return fmt.Errorf("-repeat %d: want 1..5", repeat)
	}
	if serverKind != "raw" && serverKind != "nethttp" {
		return fmt.Errorf("-server %q: want raw or nethttp", serverKind)
	}
	if step <= 0 || step > 30*time.Second {
		return fmt.Errorf("-step %s: want a duration in (0, 30s]", step)
	}
	var rates []int
	for _, s := range strings.Split(rateList, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || r < 1 || r > 200000 {
			return fmt.Errorf("-rates: %q is not a rate in 1..200000", s)
		}
		rates = append(rates, r)
	}
	tools := strings.Split(toolList, ",")
	for _, t := range tools {
		if t != "loadtest" && t != "vegeta" {
			return fmt.Errorf("-tools: unknown generator %q", t)
		}
	}

	server := exec.Command(os.Args[0], "-serve", serverKind)
	server.Stderr = os.Stderr
	stdin, err := server.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := server.StdoutPipe()
	if err != nil {
		return err
	}
	if err := server.Start(); err != nil {
		return err
	}
	defer func() {
		stdin.Close()
		server.Wait()
	}()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("server did not start: %w", err)
	}
	url := "http://" + strings.TrimSpace(addr) + "/"
	if !loadtest.IsLoopback(strings.Split(strings.TrimSpace(addr), ":")[0]) {
		return fmt.Errorf("server address %s is not loopback", addr)
	}

	fmt.Printf("ratebench: %s, GOMAXPROCS %d, %d CPUs, step %s, %s target %s (separate process, pid %d), load average %s\n\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), step, serverKind, url, server.Process.Pid, loadAverage())
	fmt.Println("| rate (rps) | generator | sent | ok | achieved (rps) | held ±1 % | p99 | generator CPU (cores) | CPU ms per 1k req | server CPU (cores) |")
	fmt.Println("|---:|---|---:|---:|---:|:---:|---:|---:|---:|---:|")
	best := map[string]measurement{}
	heldAt := map[string]map[int]measurement{} // tool → rate → the try that held it
	misses := map[string]int{}
	turn := 0
	for _, rate := range rates {
		heldNow := map[string]bool{}
		for try := 0; try < repeat; try++ {
			order := tools
			if turn%2 == 1 && len(tools) > 1 { // alternate who goes first, so neither always meets a warmer server
				order = append([]string{tools[len(tools)-1]}, tools[:len(tools)-1]...)
			}
			turn++
			for _, tool := range order {
				if misses[tool] >= 2 || heldNow[tool] {
					continue
				}
				runtime.GC()
				time.Sleep(500 * time.Millisecond) // let the last run's closed connections and workers go
				m, err := measure(tool, url, rate, step, maxInFlight, server.Process.Pid)
				if err != nil {
					return err
				}
				if procCPU(server.Process.Pid) == 0 {
					return errors.New("the target server is gone (see its stderr above)")
				}
				printRow(m)
				if m.held() {
					heldNow[tool] = true
					if heldAt[tool] == nil {
						heldAt[tool] = map[int]measurement{}
					}
					heldAt[tool][m.rate] = m
					if m.rate > best[tool].rate {
						best[tool] = m
					}
				}
			}
		}
		for _, tool := range tools {
			if heldNow[tool] {
				misses[tool] = 0
			} else {
				misses[tool]++
			}
		}
	}
	fmt.Println()
	for _, tool := range tools {
		b, ok := best[tool]
		if !ok {
			fmt.Printf("%s: held none of the rates\n", tool)
			continue
		}
		fmt.Printf("%s: highest rate held %d rps, %.1f CPU ms per 1k requests there (%.2f cores)\n",
			tool, b.rate, cpuPer1k(b), b.cpu.Seconds()/b.wall.Seconds())
	}
	// CPU is only comparable at the same rate: the highest one every generator held.
	for i := len(rates) - 1; i >= 0 && len(tools) > 1; i-- {
		var line []string
		for _, tool := range tools {
			if m, ok := heldAt[tool][rates[i]]; ok {
				line = append(line, fmt.Sprintf("%s %.1f", tool, cpuPer1k(m)))
			}
		}
		if len(line) == len(tools) {
			fmt.Printf("at %d rps, the highest rate all held, CPU ms per 1k requests: %s\n", rates[i], strings.Join(line, ", "))
			break
		}
	}
	return nil
}

func printRow(m measurement) {
	held := "no"
	if m.held() {
		held = "yes"
	}
	p99 := fmt.Sprintf("%.2f ms (%s)", float64(m.p99)/1e6, m.latencyRef)
	if m.tool == "loadtest" {
		p99 += fmt.Sprintf(", lag max %.1f ms", float64(m.lagMax)/1e6)
	}
	fmt.Printf("| %d | %s | %d | %d | %.0f | %s | %s | %.2f | %.1f | %.2f |\n",
		m.rate, m.tool, m.sent, m.ok, m.achieved(), held, p99,
		m.cpu.Seconds()/m.wall.Seconds(), cpuPer1k(m), m.serverCPU.Seconds()/m.wall.Seconds())
}

func cpuPer1k(m measurement) float64 {
	if m.ok == 0 {
		return 0
	}
	return float64(m.cpu.Milliseconds()) / (float64(m.ok) / 1000)
}

func measure(tool, url string, rate int, step time.Duration, maxInFlight, serverPid int) (measurement, error) {
	m := measurement{tool: tool, rate: rate}
	cpu0, srv0 := selfCPU(), procCPU(serverPid)
	start := time.Now()
	var err error
	switch tool {
	case "loadtest":
		err = runOurs(&m, url, rate, step, maxInFlight)
	case "vegeta":
		runVegeta(&m, url, rate, step)
	}
	m.wall = time.Since(start)
	m.cpu = selfCPU() - cpu0
	m.serverCPU = procCPU(serverPid) - srv0
	return m, err
}

func runOurs(m *measurement, url string, rate int, step time.Duration, maxInFlight int) error {
	client := loadtest.NewClient(maxInFlight)
	defer client.CloseIdleConnections() // so the next run starts from no connections, like the first
	mix, err := loadtest.NewMix(loadtest.Kind{Name: "get", Weight: 1, Build: func(ctx context.Context, _ uint64) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	}})
	if err != nil {
		return err
	}
	res, err := loadtest.Run(context.Background(), loadtest.Options{
		Profile:     loadtest.Constant(float64(rate), step),
		Mix:         mix,
		MaxRequests: uint64(float64(rate)*step.Seconds()) + 1,
		MaxInFlight: maxInFlight,
		Timeout:     10 * time.Second,
		Client:      client,
	})
	if err != nil {
		return err
	}
	m.sent, m.ok = res.Totals.Sent, res.Totals.OK
	m.p99 = time.Duration(res.Totals.Latency.P99 * 1e6)
	m.lagMax = time.Duration(res.Totals.LagMaxMs * 1e6)
	m.latencyRef = "from due time"
	return nil
}

func runVegeta(m *measurement, url string, rate int, step time.Duration) {
	// vegeta's own default transport (NewAttacker's), but ours to close when the run is over.
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4zero}, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: vegeta.DefaultConnections,
		MaxConnsPerHost:     vegeta.DefaultMaxConnections,
	}
	defer tr.CloseIdleConnections()
	atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: tr}), vegeta.Timeout(10*time.Second), vegeta.KeepAlive(true))
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
	var metrics vegeta.Metrics
	for res := range atk.Attack(targeter, vegeta.Rate{Freq: rate, Per: time.Second}, step, "ratebench") {
		metrics.Add(res)
		m.sent++
		if res.Code == http.StatusOK {
			m.ok++
		}
	}
	metrics.Close()
	m.p99 = metrics.Latencies.P99
	m.latencyRef = "from send"
}

func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is another process's user+system CPU time from /proc/PID/stat (in clock ticks of 1/100 s,
// the Linux USER_HZ).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
