//  Errors as the SDK surfaces them: the APIError subclass, status, body,
//  headers, and the retries the SDK makes or does not make.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import { client, countingFetch, rejection, timed, user, waitForGateway } from './helpers.js';

before(() => waitForGateway());

const ask = (extra = {}) => ({ model: 'deepseek-chat', messages: user('x'), ...extra });

//  Every error response carries x-request-id; the SDK (v5) keeps the
//  response headers as a Headers object on the error.
function assertRequestId (error) {
    assert.ok(error.headers, 'the error has the response headers');
    const id = error.headers.get('x-request-id');
    assert.ok(id && id.length > 0, 'x-request-id on the error response');
    assert.equal(error.requestID, id);
}

function assertEnvelope (error) {
    assert.equal(typeof error.error?.message, 'string', 'error.message in the body');
    assert.equal(typeof error.type, 'string', 'error.type in the body');
    assert.ok('param' in error.error, 'error.param in the body');
    assert.ok('code' in error.error, 'error.code in the body');
}

test('bad key: AuthenticationError 401', async () => {
    const error = await rejection(client({ apiKey: 'sk-not-a-key' }).chat.completions.create(ask()));
    assert.ok(error instanceof OpenAI.AuthenticationError, `got ${error?.constructor?.name}`);
    assert.equal(error.status, 401);
    assertEnvelope(error);
    assertRequestId(error);
});

test('bad key on models.list(): AuthenticationError 401', async () => {
    const error = await rejection(client({ apiKey: 'sk-not-a-key' }).models.list());
    assert.ok(error instanceof OpenAI.AuthenticationError);
    assert.equal(error.status, 401);
    assertRequestId(error);
});

test('unknown model: NotFoundError 404 naming the model', async () => {
    const error = await rejection(client().chat.completions.create(ask({ model: 'no-such-model' })));
    assert.ok(error instanceof OpenAI.NotFoundError, `got ${error?.constructor?.name}`);
    assert.equal(error.status, 404);
    assert.match(error.message, /no-such-model/);
    assertEnvelope(error);
    assertRequestId(error);
});

test('temperature 5: UnprocessableEntityError 422 naming temperature', async () => {
    const error = await rejection(client().chat.completions.create(ask({ temperature: 5 })));
    assert.ok(error instanceof OpenAI.UnprocessableEntityError, `got ${error?.constructor?.name}`);
    assert.ok(error instanceof OpenAI.APIError);
    assert.equal(error.status, 422);
    assert.match(error.message, /temperature/);
    assert.equal(error.param, 'temperature');
    assertEnvelope(error);
    assertRequestId(error);
});

test('stream: true with a bad key fails before any chunk', async () => {
    const error = await rejection(client({ apiKey: 'sk-not-a-key' }).chat.completions.create(ask({ stream: true })));
    assert.ok(error instanceof OpenAI.AuthenticationError);
    assertRequestId(error);
});

test('upstream 429, maxRetries 0: RateLimitError with retry-after', async () => {
    const counter = countingFetch();
    const error = await rejection(client({ maxRetries: 0, fetch: counter.fetch })
        .chat.completions.create(ask({ mock: { status: 429, retry_after: 1 } })));
    assert.ok(error instanceof OpenAI.RateLimitError, `got ${error?.constructor?.name}`);
    assert.equal(error.status, 429);
    assert.equal(error.headers.get('retry-after'), '1');
    assert.equal(counter.calls, 1);
    assertEnvelope(error);
    assertRequestId(error);
});

test('upstream 429, stream: true: RateLimitError before any chunk', async () => {
    const error = await rejection(client().chat.completions.create(
        ask({ stream: true, mock: { status: 429, retry_after: 1 } })));
    assert.ok(error instanceof OpenAI.RateLimitError);
    assert.equal(error.headers.get('retry-after'), '1');
    assertRequestId(error);
});

test('upstream 429, maxRetries 1: the SDK waits Retry-After, retries once, then fails', { timeout: 8000 }, async () => {
    const counter = countingFetch();
    const { ms, error } = await timed(client({ maxRetries: 1, fetch: counter.fetch })
        .chat.completions.create(ask({ mock: { status: 429, retry_after: 1 } })));
    assert.ok(error instanceof OpenAI.RateLimitError, `got ${error}`);
    assert.equal(error.status, 429);
    assert.equal(counter.calls, 2, 'one request and one retry');
    assert.ok(ms >= 900, `took ${Math.round(ms)} ms: the retry waited for Retry-After (1 s)`);
    assert.ok(ms < 4000, `took ${Math.round(ms)} ms`);
    assertRequestId(error);
});

test('upstream 402: status 402, x-should-retry false, not retried even with maxRetries 2', async () => {
    const counter = countingFetch();
    const { ms, error } = await timed(client({ maxRetries: 2, fetch: counter.fetch })
        .chat.completions.create(ask({ mock: { status: 402 } })));
    assert.ok(error instanceof OpenAI.APIError, `got ${error}`);
    assert.equal(error.status, 402);
    assert.equal(error.headers.get('x-should-retry'), 'false');
    assert.equal(counter.calls, 1, 'no retry');
    assert.ok(ms < 500, `failed fast: ${Math.round(ms)} ms`);
    assertEnvelope(error);
    assertRequestId(error);
});

test('upstream 500: InternalServerError with status 502', async () => {
    const counter = countingFetch();
    const error = await rejection(client({ maxRetries: 0, fetch: counter.fetch })
        .chat.completions.create(ask({ mock: { status: 500 } })));
    assert.ok(error instanceof OpenAI.InternalServerError, `got ${error?.constructor?.name}`);
    assert.equal(error.status, 502);
    assert.equal(counter.calls, 1);
    assertEnvelope(error);
    assertRequestId(error);
});

test('upstream 503: InternalServerError 503 with Retry-After', async () => {
    const error = await rejection(client().chat.completions.create(
        ask({ mock: { status: 503, retry_after: 1 } })));
    assert.ok(error instanceof OpenAI.InternalServerError, `got ${error?.constructor?.name}`);
    assert.equal(error.status, 503);
    assert.equal(error.headers.get('retry-after'), '1');
    assertEnvelope(error);
    assertRequestId(error);
});

test('upstream 400: BadRequestError 400, not retried', async () => {
    const counter = countingFetch();
    const error = await rejection(client({ maxRetries: 2, fetch: counter.fetch })
        .chat.completions.create(ask({ mock: { status: 400 } })));
    assert.ok(error instanceof OpenAI.BadRequestError, `got ${error?.constructor?.name}`);
    assert.equal(error.status, 400);
    assert.equal(counter.calls, 1);
    assertEnvelope(error);
    assertRequestId(error);
});
