package platform

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

// Healthcheck makes `<binary> healthcheck URL` probe URL and exit 0 on a 2xx answer, 1 otherwise. The
// images have no shell and no curl, so container healthchecks run the service's own binary. It returns
// without doing anything when the process was started without that argument.
func Healthcheck(args []string) {
	if len(args) < 2 || args[1] != "healthcheck" {
		return
	}
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck URL")
		os.Exit(2)
	}
	os.Exit(probe(args[2]))
}

func probe(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, "healthcheck:", resp.Status)
		return 1
	}
	return 0
}
