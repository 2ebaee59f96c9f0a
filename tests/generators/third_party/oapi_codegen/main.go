// oapi-codegen's client (types + client) against a live server.
// argv: base URL, email, password, model id. Prints one JSON line per step.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"

	"bitnet.test/oapi/bitnet"
	openapi_types "github.com/oapi-codegen/runtime/types"
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
	ctx := context.Background()
	anonymous, err := bitnet.NewClientWithResponses(url + "/v1")
	if err != nil {
		log.Fatal(err)
	}
	login, err := anonymous.LoginWithResponse(ctx, bitnet.LoginJSONRequestBody{
		Email: openapi_types.Email(email), Password: &password, // writeOnly properties are pointers
	})
	if err != nil || login.JSON200 == nil {
		log.Fatalf("login: %v %s", err, login.Body)
	}
	emit(map[string]any{"step": "login", "token_type": login.JSON200.TokenType})
	bearer := func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+login.JSON200.AccessToken)
		return nil
	}
	client, err := bitnet.NewClientWithResponses(url+"/v1", bitnet.WithRequestEditorFn(bearer))
	if err != nil {
		log.Fatal(err)
	}
	me, err := client.GetCurrentUserWithResponse(ctx)
	if err != nil || me.JSON200 == nil {
		log.Fatalf("me: %v %s", err, me.Body)
	}
	emit(map[string]any{"step": "me", "email": me.JSON200.Email})
	prompt, maxTokens := "Hello", 4
	stream, err := client.StreamInferenceWithResponse(ctx, bitnet.StreamInferenceJSONRequestBody{
		Model: model, Prompt: &prompt, MaxTokens: &maxTokens,
	})
	if err != nil {
		log.Fatal(err)
	}
	emit(map[string]any{"step": "stream", "body": string(stream.Body)})
	missing, err := client.GetModelWithResponse(ctx, "mdl_00000000000000000000000000")
	if err != nil {
		log.Fatal(err)
	}
	emit(map[string]any{"step": "not_found", "status": missing.StatusCode()})
}
