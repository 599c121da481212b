//  Shared setup for the openai SDK tests: the client, the counting fetch,
//  and small helpers.  Not a test file (node --test runs *.test.js only).
import OpenAI from 'openai';

export const BASE_URL = process.env.SEEKMESH_BASE_URL || 'http://127.0.0.1:8080/v1';
export const API_KEY = process.env.SEEKMESH_API_KEY || 'sk-seekmesh-dev';
//  The connector's admin endpoint (metrics); checks that need it skip
//  when it does not answer.
export const CONNECTOR_ADMIN_URL =
    process.env.SEEKMESH_CONNECTOR_ADMIN_URL || 'http://127.0.0.1:9082';

//  A client with no retries and a short timeout unless told otherwise.
export function client (options = {}) {
    return new OpenAI({
        baseURL: BASE_URL,
        apiKey: API_KEY,
        maxRetries: 0,
        timeout: 10_000,
        ...options,
    });
}

//  A fetch that counts the HTTP requests the SDK makes (retries included).
export function countingFetch () {
    const counter = {
        calls: 0,
        fetch: (...args) => {
            counter.calls++;
            return fetch(...args);
        },
    };
    return counter;
}

//  The error a promise rejects with (fails if it resolves).
export async function rejection (promise) {
    try {
        await promise;
    }
    catch (error) {
        return error;
    }
    throw new Error('expected the call to fail, but it succeeded');
}

//  Milliseconds a promise takes to settle, and its outcome.
export async function timed (promise) {
    const start = performance.now();
    let error = null, value = null;
    try {
        value = await promise;
    }
    catch (e) {
        error = e;
    }
    return { ms: performance.now() - start, error, value };
}

//  One user message.
export function user (text) {
    return [{ role: 'user', content: text }];
}

//  All chunks of an SDK stream.
export async function collect (stream) {
    const chunks = [];
    for await (const chunk of stream)
        chunks.push(chunk);
    return chunks;
}

//  A counter's value from a Prometheus text page, or null.
//  A metric's value from a service's admin port; 0 for a series not made
//  yet.  An admin port that cannot be read fails the test: a check that
//  quietly skips itself would pass on a broken mesh.
export async function metric (adminUrl, line) {
    const response = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(2000) });
    if (response.status !== 200)
        throw new Error(`${adminUrl}/metrics answered ${response.status}`);
    const text = await response.text();
    for (const row of text.split('\n'))
        if (row.startsWith(line + ' '))
            return Number(row.slice(line.length + 1));
    return 0;
}

//  Waits until the ingress answers GET /models (it may be restarting after
//  a crash that an earlier test file caused); gives up after ms.
export async function waitForGateway (ms = 10_000) {
    const deadline = Date.now() + ms;
    let last = null;
    while (Date.now() < deadline) {
        try {
            const response = await fetch(`${BASE_URL}/models`, {
                headers: { authorization: `Bearer ${API_KEY}` },
                signal: AbortSignal.timeout(1000),
            });
            await response.arrayBuffer();
            if (response.status === 200)
                return;
            last = `status ${response.status}`;
        }
        catch (error) {
            last = error.cause?.code || error.message;
        }
        await new Promise(resolve => setTimeout(resolve, 100));
    }
    throw new Error(`the gateway at ${BASE_URL} did not answer within ${ms} ms (${last})`);
}

//  A kept-alive connection to the ingress, with one request answered on it.
//  If the ingress process dies, the connection closes: watch.closed.
export async function keepAliveWatch () {
    const http = await import('node:http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const url = new URL(`${BASE_URL}/models`);
    const get = () => new Promise((resolve, reject) => {
        const request = http.get(url, {
            agent, headers: { authorization: `Bearer ${API_KEY}` }, timeout: 2000,
        }, response => {
            response.resume();
            response.on('end', () => resolve({ status: response.statusCode, socket: request.socket }));
        });
        request.on('error', reject);
        request.on('timeout', () => request.destroy(new Error('timeout')));
    });
    const first = await get();
    const watch = {
        closed: false,
        socket: first.socket,
        //  Another request: true when it reuses the watched connection
        async reuses () {
            const next = await get();
            return next.status === 200 && next.socket === first.socket;
        },
        close () {
            agent.destroy();
        },
    };
    first.socket.once('close', () => { watch.closed = true; });
    return watch;
}

export function sleep (ms) {
    return new Promise(resolve => setTimeout(resolve, ms));
}
