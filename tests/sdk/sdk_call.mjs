//  One chat request through the official openai SDK, for the Python
//  integration tests that drive a scenario step by step (sessions,
//  takeover, the word filter): node sdk_call.mjs '<spec JSON>'
//
//  spec: { baseURL, apiKey, body (the request; "stream" chooses the
//  kind), headers (extra request headers) }.  Prints one JSON object:
//  { ok, status, headers: {x-seekmesh-model, x-request-id}, completion }
//  for a body; for a stream { ..., chunks, content, reasoning, finish,
//  model }, as the SDK's async iterator gave them; or { ok: false, status,
//  code, type, message } when the SDK threw an API error.  Not a test file
//  (node --test runs *.test.js only).
import OpenAI from 'openai';

const spec = JSON.parse(process.argv[2]);
const client = new OpenAI({
    baseURL: spec.baseURL,
    apiKey: spec.apiKey,
    maxRetries: 0,
    timeout: spec.timeoutMs ?? 60_000,
});

function pick (headers) {
    return {
        'x-seekmesh-model': headers.get('x-seekmesh-model'),
        'x-request-id': headers.get('x-request-id'),
    };
}

try {
    const { data, response } = await client.chat.completions
        .create(spec.body, { headers: spec.headers ?? {} })
        .withResponse();
    const out = { ok: true, status: response.status, headers: pick(response.headers) };
    if (spec.body.stream) {
        const chunks = [];
        for await (const chunk of data)
            chunks.push(chunk);
        out.chunks = chunks;
        out.content = chunks.map(c => c.choices?.[0]?.delta?.content ?? '').join('');
        out.reasoning = chunks.map(c => c.choices?.[0]?.delta?.reasoning_content ?? '').join('');
        out.finish = chunks.map(c => c.choices?.[0]?.finish_reason).filter(Boolean).pop() ?? null;
        out.model = chunks[0]?.model ?? null;
    }
    else
        out.completion = data;
    console.log(JSON.stringify(out));
}
catch (error) {
    if (error instanceof OpenAI.APIError)
        console.log(JSON.stringify({ ok: false, status: error.status ?? null, code: error.code ?? null,
                                     type: error.type ?? null, message: error.message }));
    else {
        console.error(error);
        process.exit(1);
    }
}
