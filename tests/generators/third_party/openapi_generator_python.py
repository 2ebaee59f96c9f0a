"""openapi-generator's Python client (default options) against a live server.

argv: base URL, email, password, model id. Prints one JSON line per step.
"""

import json
import sys

import openapi_client as oc


def main(url: str, email: str, password: str, model: str) -> None:
    with oc.ApiClient(oc.Configuration(host=url + "/v1")) as anonymous:
        tokens = oc.AuthApi(anonymous).login(oc.LoginRequest(email=email, password=password))
    print(json.dumps({"step": "login", "token_type": tokens.token_type}))
    with oc.ApiClient(oc.Configuration(host=url + "/v1", access_token=tokens.access_token)) as client:
        me = oc.AuthApi(client).get_current_user()
        print(json.dumps({"step": "me", "email": me.email}))
        request = oc.InferenceRequest(model=model, prompt="Hello", max_tokens=4)
        text = oc.InferenceApi(client).stream_inference(request)
        print(json.dumps({"step": "stream", "body": text}))
        try:
            oc.ModelsApi(client).get_model("mdl_00000000000000000000000000")
        except oc.ApiException as exc:
            print(json.dumps({"step": "not_found", "status": exc.status}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
