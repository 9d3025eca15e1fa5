// Command fetchserver is an MCP server with one tool, fetch, that GETs a URL and returns the
// page's text. It plays the lab's mcp-website-fetcher role and speaks both MCP transports:
//
//	/sse  legacy HTTP+SSE (GET the stream, POST to the endpoint it announces)
//	/mcp  Streamable HTTP
//
// Usage:
//
//	fetchserver [-addr 127.0.0.1:8000]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const (
	fetchTimeout = 10 * time.Second
	maxPageBytes = 1 << 20 // a page is cut at 1 MiB
)

// fetchArgs are the arguments of the fetch tool.
type fetchArgs struct {
	// URL is the page to fetch: an absolute http or https URL (others are refused).
	URL string `json:"url" jsonschema:"the http or https URL to fetch"`
}

// newServer returns the MCP server with the fetch tool; client makes the tool's requests.
func newServer(client *http.Client) *mcp.Server {
	server := mcp.NewServer(&mcp.Implementation{Name: "mcp-website-fetcher", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{
		Name:        "fetch",
		Description: "Fetches a website and returns its content",
	}, func(ctx context.Context, _ *mcp.CallToolRequest, args fetchArgs) (*mcp.CallToolResult, any, error) {
		text, err := fetch(ctx, client, args.URL)
		if err != nil {
			return nil, nil, err // the SDK turns this into a result with isError: true
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
	return server
}

// fetch GETs rawURL and returns at most maxPageBytes of its body.
func fetch(ctx context.Context, client *http.Client, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("url %q: want an absolute http or https URL", rawURL)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("url %q: %w", rawURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes))
	if err != nil {
		return "", fmt.Errorf("fetch %s: reading the body: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	return string(body), nil
}

// handler serves server over legacy SSE on /sse and Streamable HTTP on /mcp.
func handler(server *mcp.Server) http.Handler {
	get := func(*http.Request) *mcp.Server { return server }
	mux := http.NewServeMux()
	mux.Handle("/sse", mcp.NewSSEHandler(get, nil))
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(get, nil))
	return mux
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	flag.Parse()
	// the same log format as mcpgate's, whose output make run interleaves with this one
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "fetchserver")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv := &http.Server{Addr: *addr, Handler: handler(newServer(&http.Client{})), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close() // SSE streams never go idle, so a graceful Shutdown would only wait
	}()
	log.Info("listening", "addr", *addr, "sse", "/sse", "streamable-http", "/mcp")
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serving", "error", err)
		os.Exit(1)
	}
}
