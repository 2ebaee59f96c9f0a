// openapi-generator's Go client (default options) against a live server.
// argv: base URL, email, password, model id. Prints one JSON line per step.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	openapi "github.com/GIT_USER_ID/GIT_REPO_ID"
)

func emit(v map[string]any) {
	line, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(line))
}

func main() {
	url, email, password, model := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	cfg := openapi.NewConfiguration()
	cfg.Servers = openapi.ServerConfigurations{{URL: url + "/v1"}}
	client := openapi.NewAPIClient(cfg)
	tokens, _, err := client.AuthAPI.Login(context.Background()).LoginRequest(*openapi.NewLoginRequest(email, password)).Execute()
	if err != nil {
		log.Fatal(err)
	}
	emit(map[string]any{"step": "login", "token_type": tokens.TokenType})
	ctx := context.WithValue(context.Background(), openapi.ContextAccessToken, tokens.AccessToken)
	me, _, err := client.AuthAPI.GetCurrentUser(ctx).Execute()
	if err != nil {
		log.Fatal(err)
	}
	emit(map[string]any{"step": "me", "email": me.Email})
	request := openapi.NewInferenceRequest(model)
	request.SetPrompt("Hello")
	request.SetMaxTokens(4)
	body, _, err := client.InferenceAPI.StreamInference(ctx).InferenceRequest(*request).Execute()
	if err != nil {
		log.Fatal(err)
	}
	emit(map[string]any{"step": "stream", "body": body})
	_, resp, err := client.ModelsAPI.GetModel(ctx, "mdl_00000000000000000000000000").Execute()
	if err == nil || resp == nil {
		log.Fatalf("a missing model was found: %v", err)
	}
	emit(map[string]any{"step": "not_found", "status": resp.StatusCode})
}
