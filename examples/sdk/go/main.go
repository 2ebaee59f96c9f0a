// A tour of the generated Go SDK against a running server, one JSON line per step.
//
//	bitnet sdk generate --lang go --out sdk
//	BITNET_URL=http://127.0.0.1:8080 BITNET_EMAIL=... BITNET_PASSWORD=... \
//	  BITNET_MODEL_FILE=model-f32.gguf go run .
//
// Optional: BITNET_LIMITED_TOKEN, the token of an account on a tier with a small hourly
// budget, to show the 429 error. The test suite runs this program
// (tests/generators/test_conformance.py).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"example.com/bitnet"
)

func say(step string, fields map[string]any) {
	fields["step"] = step
	line, err := json.Marshal(fields)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(line))
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}

func main() {
	ctx := context.Background()
	baseURL, modelFile := os.Getenv("BITNET_URL"), os.Getenv("BITNET_MODEL_FILE")
	login := bitnet.LoginRequest{Email: os.Getenv("BITNET_EMAIL"), Password: os.Getenv("BITNET_PASSWORD")}

	client := bitnet.NewClient(baseURL)
	tokens := must(client.Login(ctx, login))
	client.SetTokens(tokens.AccessToken, tokens.RefreshToken)
	me := must(client.GetCurrentUser(ctx))
	say("login", map[string]any{"email": me.Email, "credential": me.CredentialType})

	key := must(client.CreateAPIKey(ctx, bitnet.APIKeyCreate{Name: "sdk-tour"}))
	os.Setenv("BITNET_BASE_URL", baseURL)
	os.Setenv("BITNET_API_KEY", key.Key)
	byKey := bitnet.NewClient("") // configured from BITNET_BASE_URL and BITNET_API_KEY
	var raw *http.Response
	viaKey := must(byKey.GetCurrentUser(ctx, bitnet.WithResponseInto(&raw)))
	say("api_key", map[string]any{"prefix": key.Prefix, "credential": viaKey.CredentialType, "raw_status": raw.StatusCode})

	file := must(os.Open(modelFile))
	small := must(client.CreateModelMultipart(ctx, bitnet.ModelUploadForm{
		File: bitnet.File{Name: filepath.Base(modelFile), Content: file}, Name: "tour-multipart"}))
	file.Close()
	say("upload_multipart", map[string]any{"id": small.ID, "status": small.Status})

	record := must(client.CreateModel(ctx, bitnet.ModelCreate{Name: "tour-f32"}))
	file = must(os.Open(modelFile)) // streamed from the file (rewound if a retry is needed)
	hash := sha256.New()
	must(io.Copy(hash, file))
	must(file.Seek(0, io.SeekStart))
	digest := hex.EncodeToString(hash.Sum(nil))
	model := must(client.UploadModelFile(ctx, record.ID, file, &bitnet.UploadModelFileParams{XContentSHA256: &digest}))
	file.Close()
	say("upload_raw", map[string]any{"id": model.ID, "status": model.Status, "size": model.SizeBytes})

	// Resumable upload: an earlier attempt stopped half-way (here: the first half sent as one
	// piece); UploadModelResumable asks the server's offset and sends the rest.
	file = must(os.Open(modelFile))
	size := must(file.Stat()).Size()
	half := size / 2
	pending := must(client.CreateModel(ctx, bitnet.ModelCreate{Name: "tour-resumable"}))
	must(client.UploadModelPiece(ctx, pending.ID, io.NewSectionReader(file, 0, half),
		&bitnet.UploadModelPieceParams{ContentRange: fmt.Sprintf("bytes 0-%d/%d", half-1, size)}))
	held := must(client.GetModelUpload(ctx, pending.ID)).Offset
	var positions []int64 // the server's offset: at the start, then after each piece
	resumed := must(client.UploadModelResumable(ctx, pending.ID, file, size, &bitnet.ResumableOptions{
		PieceSize: 65536, OnProgress: func(sent, _ int64) { positions = append(positions, sent) }}))
	file.Close()
	say("upload_resumable", map[string]any{"status": resumed.Model.Status, "held": held, "first_sent": positions[1],
		"size": resumed.Model.SizeBytes, "sha256": resumed.Model.SHA256})
	if err := client.DeleteModel(ctx, pending.ID); err != nil {
		log.Fatal(err)
	}

	var names []string
	for m, err := range client.ListModelsAll(ctx, &bitnet.ListModelsParams{Limit: bitnet.Ptr(1)}) { // one per page
		names = append(names, must(m, err).Name)
	}
	sort.Strings(names)
	say("list", map[string]any{"names": names})

	job := must(client.QuantizeModel(ctx, bitnet.QuantizeRequest{
		ModelID: model.ID, Qtype: bitnet.QuantTypeTq20, Mode: bitnet.QuantizeRequestModeAsync}, nil))
	job = must(client.WaitForQuantizeJob(ctx, job.ID, &bitnet.WaitOptions{Timeout: 5 * time.Minute}))
	var result bitnet.QuantizeResult
	if job.Result != nil {
		result = must(job.Result.AsQuantizeResult())
	}
	say("quantize", map[string]any{"status": job.Status, "model_id": result.ModelID})

	request := bitnet.InferenceRequest{Model: result.ModelID, Prompt: bitnet.Ptr("Hello"),
		MaxTokens: bitnet.Ptr(8), Temperature: bitnet.Ptr(0.0)}
	answer := must(client.RunInference(ctx, request))
	say("inference", map[string]any{"text": answer.Text, "tokens": answer.Usage.CompletionTokens})

	stream := must(client.StreamInference(ctx, request))
	var pieces []string
	var doneText *string
	for event := range stream.Events() {
		switch {
		case event.Token != nil:
			pieces = append(pieces, event.Token.Text)
		case event.Done != nil:
			doneText = &event.Done.Text
		}
	}
	if err := stream.Err(); err != nil {
		log.Fatal(err)
	}
	say("stream", map[string]any{"tokens": len(pieces), "joined": strings.Join(pieces, ""), "done_text": doneText})

	socket := must(client.ConnectInferenceSocket(ctx)) // the same generation over the WebSocket
	var joined strings.Builder
	last := ""
	for message, err := range socket.Generate(request, "") {
		if err != nil {
			log.Fatal(err)
		}
		if message.Type == "token" {
			joined.WriteString(message.Text)
		}
		last = message.Type
	}
	var ready struct {
		UserID string `json:"user_id"`
	}
	if err := socket.Ready.Decode(&ready); err != nil {
		log.Fatal(err)
	}
	socket.Close()
	say("websocket", map[string]any{"joined": joined.String(), "last": last, "user": ready.UserID})

	usage := must(client.GetAccountUsage(ctx, &bitnet.GetAccountUsageParams{GroupBy: bitnet.GetAccountUsageGroupByOperation}))
	operations := []string{}
	for _, bucket := range usage.Buckets {
		operations = append(operations, bucket.Key)
	}
	sort.Strings(operations)
	say("usage", map[string]any{"requests": usage.Totals.Requests, "operations": operations})

	var apiErr *bitnet.APIError
	_, err := client.GetModel(ctx, "mdl_0000000000missing", bitnet.WithRequestTimeout(10*time.Second),
		bitnet.WithRequestHeader("X-Tour", "1"))
	if errors.As(err, &apiErr) && errors.Is(err, bitnet.ErrNotFound) {
		say("not_found", map[string]any{"status": apiErr.StatusCode, "title": apiErr.Title, "request_id": apiErr.RequestID,
			"kind": "NotFoundError"})
	} else {
		log.Fatalf("expected an APIError, got %v", err)
	}

	if limited := os.Getenv("BITNET_LIMITED_TOKEN"); limited != "" {
		policy := bitnet.DefaultRetryPolicy()
		policy.MaxRetryAfter = 5 * time.Second
		smallTier := bitnet.NewClient(baseURL, bitnet.WithToken(limited), bitnet.WithRetry(policy))
		for calls := 1; calls < 50; calls++ {
			if _, err := smallTier.GetCurrentUser(ctx); errors.As(err, &apiErr) && errors.Is(err, bitnet.ErrRateLimit) {
				say("rate_limited", map[string]any{"status": apiErr.StatusCode, "calls": calls,
					"retry_after": apiErr.RetryAfter.Seconds(), "kind": "RateLimitError"})
				break
			} else if err != nil {
				log.Fatal(err)
			}
		}
	}

	var connErr *bitnet.ConnectionError
	if _, err := bitnet.NewClient("http://127.0.0.1:9", bitnet.WithRetry(bitnet.NoRetry)).GetVersion(ctx); errors.As(err, &connErr) {
		say("connection_error", map[string]any{"kind": "ConnectionError", "cause": fmt.Sprintf("%T", connErr.Unwrap())})
	} else {
		log.Fatalf("expected a ConnectionError, got %v", err)
	}

	fresh := must(client.Login(ctx, login))
	refreshed := 0
	stale := bitnet.NewClient(baseURL, bitnet.WithToken("expired-or-revoked"),
		bitnet.WithRefreshToken(fresh.RefreshToken), bitnet.WithOnTokens(func(bitnet.Tokens) { refreshed++ }))
	user := must(stale.GetCurrentUser(ctx))
	say("refresh", map[string]any{"email": user.Email, "refreshed": refreshed})
}
