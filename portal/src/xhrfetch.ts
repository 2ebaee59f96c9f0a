// A `fetch` for the SDK that reports upload progress: fetch() cannot (streamed request bodies
// need HTTP/2 in browsers), XMLHttpRequest can. Passed to a BitNetClient as `options.fetch`.

export type Progress = (sent: number, total: number) => void;

export function progressFetch(onProgress: Progress): typeof fetch {
  return (input: RequestInfo | URL, init: RequestInit = {}) =>
    new Promise<Response>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(init.method ?? "GET", String(input instanceof Request ? input.url : input));
      xhr.responseType = "arraybuffer";
      new Headers(init.headers).forEach((value, name) => {
        if (name !== "content-length") xhr.setRequestHeader(name, value);
      });
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : 0);
      xhr.onload = () => {
        const headers = new Headers();
        for (const line of xhr.getAllResponseHeaders().trim().split(/\r?\n/)) {
          const at = line.indexOf(":");
          if (at > 0) headers.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
        }
        const empty = xhr.status === 204 || xhr.status === 304;
        resolve(new Response(empty ? null : xhr.response, { status: xhr.status, statusText: xhr.statusText, headers }));
      };
      xhr.onerror = () => reject(new TypeError("network error"));
      xhr.onabort = () => reject(new DOMException("aborted", "AbortError"));
      init.signal?.addEventListener("abort", () => xhr.abort());
      xhr.send((init.body ?? null) as XMLHttpRequestBodyInit | null);
    });
}
