/*  router_lease: leases of quota, sized from the router's own traffic.     */
#include "router_lease.h"

#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_redis.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_MS 60000
//  Ticks without traffic before an account with nothing held is forgotten
#define IDLE_TICKS 20

//  Gives back what a router holds of a key (negative: pays for tokens its
//  requests used beyond their estimates), then takes a new slice, all of it
//  or nothing, and only while the key keeps reserve_percent of each limit
//  after it.  Rates are the GCRA of the per-request script, on Redis's
//  clock; giving back moves the theoretical arrival time back, as settling
//  does.
//  KEYS: rpm state, tpm state, budget counter
//  ARGV: rpm, tpm, budget, budget ttl (s), give requests, give tokens,
//        give budget, want requests, want tokens, want budget, reserve %
//  Returns { granted (0/1), rpm remaining, rpm reset ms, tpm remaining,
//            tpm reset ms }
static mesh_redis_script_t s_exchange = { .body =
    "local clock = redis.call('TIME')\n"
    "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local rpm, tpm, budget, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local give_r, give_t, give_b = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local want_r, want_t, want_b = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])\n"
    "local keep = (100 - tonumber(ARGV[11])) / 100\n"
    "local W = 60000\n"
    "local function refund(key, limit, amount)\n"
    "  if limit <= 0 or amount == 0 then return end\n"
    "  local tat = tonumber(redis.call('GET', key) or '0')\n"
    "  if tat == 0 and amount > 0 then return end\n"
    "  if tat < now then tat = now end\n"
    "  tat = tat - amount * W / limit\n"
    "  if tat < now then tat = now end\n"
    "  redis.call('SET', key, tat, 'PX', 2 * W)\n"
    "end\n"
    "refund(KEYS[1], rpm, give_r)\n"
    "refund(KEYS[2], tpm, give_t)\n"
    "if budget > 0 and give_b ~= 0 then\n"
    "  local left = redis.call('INCRBY', KEYS[3], -give_b)\n"
    "  if left < 0 then redis.call('SET', KEYS[3], 0, 'KEEPTTL') end\n"
    "  if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ttl) end\n"
    "end\n"
    "local function room(key, limit, want)\n"
    "  if limit <= 0 or want <= 0 then return true, nil end\n"
    "  local tat = tonumber(redis.call('GET', key) or '0')\n"
    "  if tat < now then tat = now end\n"
    "  local new = tat + want * W / limit\n"
    "  if new - now > W * keep then return false, nil end\n"
    "  return true, new\n"
    "end\n"
    "local okr, r1 = room(KEYS[1], rpm, want_r)\n"
    "local okt, t1 = room(KEYS[2], tpm, want_t)\n"
    "local okb = true\n"
    "if budget > 0 and want_b > 0 then\n"
    "  okb = tonumber(redis.call('GET', KEYS[3]) or '0') + want_b <= budget * keep\n"
    "end\n"
    "local granted = 0\n"
    "if okr and okt and okb and (want_r > 0 or want_t > 0 or want_b > 0) then\n"
    "  if r1 then redis.call('SET', KEYS[1], r1, 'PX', 2 * W) end\n"
    "  if t1 then redis.call('SET', KEYS[2], t1, 'PX', 2 * W) end\n"
    "  if budget > 0 and want_b > 0 then\n"
    "    redis.call('INCRBY', KEYS[3], want_b)\n"
    "    redis.call('EXPIRE', KEYS[3], ttl) end\n"
    "  granted = 1\n"
    "end\n"
    "local function left(key, limit)\n"
    "  if limit <= 0 then return 0, 0 end\n"
    "  local tat = tonumber(redis.call('GET', key) or '0')\n"
    "  if tat < now then tat = now end\n"
    "  return math.floor((W - (tat - now)) * limit / W), math.ceil(tat - now)\n"
    "end\n"
    "local rl, rr = left(KEYS[1], rpm)\n"
    "local tl, tr = left(KEYS[2], tpm)\n"
    "return {granted, rl, rr, tl, tr}\n"
};

//  Sets a router's block of a model's concurrency slots: its size in the
//  model's block table (router name -> slots), its expiry in the block
//  expiries (router name -> ms); the per-request script counts the blocks
//  with the per-request leases.  O(1) whatever the block's size; the same
//  size again is the renewal.  Growing is all or nothing, within the limit
//  less its reserve; a router whose block expired (Redis away past the
//  lease) is told what is left of it.
//  KEYS: model leases, model blocks, block expiries
//  ARGV: limit, lease ms, router name, want, reserve %
//  Returns the block's size now.
static mesh_redis_script_t s_block = { .body =
    "local clock = redis.call('TIME')\n"
    "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local limit, lease, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])\n"
    "local keep = (100 - tonumber(ARGV[5])) / 100\n"
    "for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do redis.call('HDEL', KEYS[2], r) end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')\n"
    "local size = want\n"
    "if want > mine then\n"
    "  local used = redis.call('ZCARD', KEYS[1])\n"
    "  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(v) end\n"
    "  if used - mine + want > math.floor(limit * keep) then size = mine end\n"
    "end\n"
    "if size > 0 then\n"
    "  redis.call('HSET', KEYS[2], ARGV[3], size)\n"
    "  redis.call('ZADD', KEYS[3], now + lease, ARGV[3])\n"
    "  redis.call('PEXPIRE', KEYS[2], 2 * lease)\n"
    "  redis.call('PEXPIRE', KEYS[3], 2 * lease)\n"
    "else\n"
    "  redis.call('HDEL', KEYS[2], ARGV[3])\n"
    "  redis.call('ZREM', KEYS[3], ARGV[3])\n"
    "end\n"
    "return size\n"
};

//  What one router holds of one key
typedef struct {
    char *name;                 //  "k:<key id>"
    router_lease_t *owner;
    //  The limits and budget counter the lease was taken under
    int64_t rpm, tpm, budget, budget_period_s;
    char budget_key [320];
    char rpm_key [300], tpm_key [300];
    //  Held and not used yet; tokens may be below 0 when requests used
    //  more than their estimates (paid at the next exchange)
    int64_t requests, tokens, budget_tokens;
    //  Redis's figures at the last exchange, for x-ratelimit-*
    int64_t rpm_left, rpm_reset_ms, tpm_left, tpm_reset_ms;
    bool asking;
    bool stale;                 //  the key's limits changed: give it all back
    int64_t quiet_until_ms;     //  Redis refused: request by request until then
    uint32_t count;             //  requests this tick
    double rate;                //  requests per second, smoothed
    double tokens_per_request;  //  estimates, smoothed
    uint32_t inflight;          //  admitted from the lease, not settled yet
    int idle_ticks;
} key_lease_t;

//  What one router holds of one model's concurrency
typedef struct {
    char *name;                 //  "m:<model>"
    router_lease_t *owner;
    char model [256];
    int64_t limit;
    int64_t slots;              //  the block's size in Redis
    int64_t inflight;           //  slots in use
    int64_t peak;               //  most in use since the last tick
    bool asking;
    int64_t quiet_until_ms;
    uint32_t count;
    double rate;
    int idle_ticks;
} model_lease_t;

struct router_lease_t {
    mesh_loop_t *loop;
    mesh_redis_t *redis;
    router_lease_settings_t settings;
    char name [80];             //  the router's, naming its blocks
    mesh_map_t *accounts;       //  name -> key_lease_t / model_lease_t
    mesh_timer_t tick;
    int64_t tick_ms;
    int64_t renewed_ms;
    int64_t ready_ms;           //  when Redis last answered
    mesh_metric_t *admitted;
    mesh_metric_t *exchanges;
    mesh_metric_t *refusals;
};

router_lease_t *
router_lease_new (mesh_loop_t *loop, mesh_redis_t *redis, const router_lease_settings_t *settings,
                  mesh_metrics_t *metrics)
{
    router_lease_t *self = calloc (1, sizeof *self);
    assert (self);
    self->loop = loop;
    self->redis = redis;
    self->settings = *settings;
    snprintf (self->name, sizeof self->name, "%s", settings->name ? settings->name : "router");
    self->accounts = mesh_map_new ();
    self->tick_ms = MESH_MAX (settings->slice_ms / 2, 10);
    if (metrics) {
        self->admitted = mesh_metrics_counter (metrics, "seekmesh_router_quota_leased_total",
            "Requests admitted from quota this router leased ahead (no Redis round trip).", NULL);
        self->exchanges = mesh_metrics_counter (metrics, "seekmesh_router_quota_lease_calls_total",
            "Lease scripts run in Redis (take, top up, give back, resize, renew).", NULL);
        self->refusals = mesh_metrics_counter (metrics, "seekmesh_router_quota_lease_refused_total",
            "Leases Redis refused because the limit was nearly spent (requests checked one by one).", NULL);
    }
    return self;
}

void
router_lease_destroy (router_lease_t **self_p)
{
    assert (self_p);
    router_lease_t *self = *self_p;
    if (!self)
        return;
    mesh_loop_timer_stop (self->loop, &self->tick);
    size_t cursor = 0;
    const char *name;
    void *account;
    while ((account = mesh_map_next (self->accounts, &cursor, &name))) {
        free (*(char **) account);
        free (account);
    }
    mesh_map_destroy (&self->accounts);
    free (self);
    *self_p = NULL;
}

//  Leases are taken, topped up and given back while Redis answers
static bool
s_enabled (router_lease_t *self)
{
    if (!self->redis || self->settings.slice_ms <= 0 || !mesh_redis_ready (self->redis))
        return false;
    self->ready_ms = mesh_loop_now_ms (self->loop);
    return true;
}

//  ... and used while it answers, or has answered in the last third of a
//  concurrency lease (a blip, a command that timed out): what is held was
//  granted, and a block this router renews has not expired in that time
static bool
s_usable (router_lease_t *self)
{
    return s_enabled (self)
        || (self->ready_ms && mesh_loop_now_ms (self->loop) - self->ready_ms < self->settings.lease_ms / 3);
}

static void s_start_ticking (router_lease_t *self);

static key_lease_t *
s_key (router_lease_t *self, const router_hold_t *hold)
{
    char name [140];
    snprintf (name, sizeof name, "k:%s", hold->key_id);
    key_lease_t *key = mesh_map_get (self->accounts, name);
    if (!key) {
        key = calloc (1, sizeof *key);
        assert (key);
        key->name = strdup (name);
        key->owner = self;
        key->rpm = -1;                  //  set by s_key_check
        mesh_map_put (self->accounts, key->name, key);
        s_start_ticking (self);
    }
    return key;
}

static model_lease_t *
s_model (router_lease_t *self, const router_hold_t *hold)
{
    char name [270];
    snprintf (name, sizeof name, "m:%s", hold->model);
    model_lease_t *model = mesh_map_get (self->accounts, name);
    if (!model) {
        model = calloc (1, sizeof *model);
        assert (model);
        model->name = strdup (name);
        model->owner = self;
        snprintf (model->model, sizeof model->model, "%s", hold->model);
        model->limit = hold->concurrency;
        mesh_map_put (self->accounts, model->name, model);
        s_start_ticking (self);
    }
    return model;
}

static bool
s_key_limited (const router_hold_t *hold)
{
    return hold->rpm > 0 || hold->tpm > 0 || hold->budget > 0;
}

//  What a key's lease should hold now: its recent traffic over a slice,
//  within the share of each limit one router may take; all 0 when that is
//  too little to be worth a lease.
static void
s_key_target (router_lease_t *self, const key_lease_t *key, int64_t *requests, int64_t *tokens,
              int64_t *budget)
{
    *requests = *tokens = *budget = 0;
    double want = ceil (key->rate * (double) self->settings.slice_ms / 1000.0);
    double per = key->tokens_per_request > 1 ? key->tokens_per_request : 1;
    double share = (double) self->settings.max_percent / 100.0;
    double scale = 1;
    if (key->rpm > 0 && want > (double) key->rpm * share)
        scale = MESH_MIN (scale, (double) key->rpm * share / want);
    if (key->tpm > 0 && want * per > (double) key->tpm * share)
        scale = MESH_MIN (scale, (double) key->tpm * share / (want * per));
    if (key->budget > 0 && want * per > (double) key->budget * share)
        scale = MESH_MIN (scale, (double) key->budget * share / (want * per));
    double granted = floor (want * scale);
    if (granted < LEASE_MIN_REQUESTS)
        return;
    *requests = key->rpm > 0 ? (int64_t) granted : 0;
    *tokens = key->tpm > 0 ? (int64_t) ceil (granted * per) : 0;
    *budget = key->budget > 0 ? (int64_t) ceil (granted * per) : 0;
}

//  Redis's figures after an exchange, for the x-ratelimit-* headers
static void
s_on_exchanged (key_lease_t *key, redisReply *reply)
{
    key->asking = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 5) {
        //  Unknown whether anything was given back or taken: what was
        //  handed back stays handed back, nothing new is used
        if (reply && reply->type == REDIS_REPLY_ERROR)
            mesh_warn ("quota lease script failed: %s", reply->str);
        return;
    }
    long long v [5];
    for (int i = 0; i < 5; i++)
        v [i] = reply->element [i]->type == REDIS_REPLY_INTEGER ? reply->element [i]->integer : 0;
    key->rpm_left = v [1];
    key->rpm_reset_ms = v [2];
    key->tpm_left = v [3];
    key->tpm_reset_ms = v [4];
}

//  The exchange in flight: what was asked for, applied when granted
typedef struct {
    key_lease_t *key;
    int64_t requests, tokens, budget;
} asked_t;

static void
s_on_key_reply (void *arg, redisReply *reply)
{
    asked_t *asked = arg;
    key_lease_t *key = asked->key;
    router_lease_t *self = key->owner;
    s_on_exchanged (key, reply);
    bool granted = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 5
                && reply->element [0]->type == REDIS_REPLY_INTEGER && reply->element [0]->integer == 1;
    mesh_debug ("lease %s: %s %lld requests, %lld tokens, %lld budget tokens; held %lld, %lld, %lld",
                key->name, granted ? "took" : "was refused", (long long) asked->requests,
                (long long) asked->tokens, (long long) asked->budget, (long long) key->requests,
                (long long) key->tokens, (long long) key->budget_tokens);
    if (granted) {
        key->requests += asked->requests;
        key->tokens += asked->tokens;
        key->budget_tokens += asked->budget;
    }
    else
    if (reply && (asked->requests || asked->tokens || asked->budget)) {
        //  Nearly spent: request by request for a while
        key->quiet_until_ms = mesh_loop_now_ms (self->loop) + 1000;
        if (self->refusals)
            mesh_metric_inc (self->refusals);
    }
    free (asked);
}

//  Brings what the router holds of a key to its target: gives back the
//  excess (and pays what is owed), tops up what is short.
static void
s_key_exchange (router_lease_t *self, key_lease_t *key, bool return_all)
{
    if (key->asking || !s_enabled (self))
        return;
    int64_t want_r, want_t, want_b;
    s_key_target (self, key, &want_r, &want_t, &want_b);
    int64_t now = mesh_loop_now_ms (self->loop);
    if (return_all || key->stale || now < key->quiet_until_ms)
        want_r = want_t = want_b = 0;
    //  Per dimension: more than twice the target held, or a debt, goes
    //  back now; less than half of it held is topped up
    int64_t *held [3] = { &key->requests, &key->tokens, &key->budget_tokens };
    int64_t target [3] = { want_r, want_t, want_b };
    int64_t give [3] = { 0, 0, 0 }, take [3] = { 0, 0, 0 };
    bool needed = false, topping = false;
    for (int i = 0; i < 3; i++) {
        if (*held [i] < 0 || (target [i] == 0 && *held [i] > 0) || *held [i] > 2 * target [i]) {
            give [i] = *held [i] - (*held [i] < 0 ? 0 : target [i]);
            *held [i] -= give [i];
            needed = true;
        }
        if (target [i] > 0 && *held [i] * 2 < target [i])
            topping = true;
    }
    if (topping)
        for (int i = 0; i < 3; i++)
            take [i] = target [i] > *held [i] ? target [i] - *held [i] : 0;
    if (!needed && !topping)
        return;
    char args [8][24];
    snprintf (args [0], 24, "%lld", (long long) key->rpm);
    snprintf (args [1], 24, "%lld", (long long) key->tpm);
    snprintf (args [2], 24, "%lld", (long long) key->budget);
    snprintf (args [3], 24, "%lld", (long long) (key->budget_period_s > 0 ? key->budget_period_s : 86400) + 3600);
    char gives [3][24], takes [3][24], reserve [24];
    for (int i = 0; i < 3; i++) {
        snprintf (gives [i], 24, "%lld", (long long) give [i]);
        snprintf (takes [i], 24, "%lld", (long long) take [i]);
    }
    snprintf (reserve, sizeof reserve, "%lld", (long long) self->settings.reserve_percent);
    const char *argv [] = { key->rpm_key, key->tpm_key, key->budget_key, args [0], args [1], args [2],
                            args [3], gives [0], gives [1], gives [2], takes [0], takes [1], takes [2],
                            reserve };
    asked_t *asked = calloc (1, sizeof *asked);
    assert (asked);
    *asked = (asked_t) { key, take [0], take [1], take [2] };
    if (mesh_redis_eval (self->redis, &s_exchange, s_on_key_reply, asked, 3,
                         (int) MESH_ARRAY_SIZE (argv), argv, NULL) < 0) {
        free (asked);
        return;                 //  what was given back is lost: errs towards less
    }
    key->asking = true;
    if (self->exchanges)
        mesh_metric_inc (self->exchanges);
}

//  What a model's block should be: room for the most this router had in
//  use lately and half as much again, within its share of the limit (the
//  limit less its reserve, over the routers); 0 when the model is too quiet
//  or its limit too small.  Concurrency is a level, not a rate: a router
//  needs as many slots as it has requests in flight, so its share is a
//  fair part of the limit rather than a slice of it.
static int64_t
s_model_target (router_lease_t *self, const model_lease_t *model)
{
    int64_t cap = model->limit * (100 - self->settings.reserve_percent) / 100
                / MESH_MAX (self->settings.routers, 1);
    if (cap < LEASE_MIN_REQUESTS
    ||  model->rate * (double) self->settings.slice_ms / 1000.0 < LEASE_MIN_REQUESTS)
        return 0;
    int64_t peak = MESH_MAX (model->peak, model->inflight);
    int64_t target = peak + MESH_MAX ((int64_t) LEASE_MIN_REQUESTS, peak / 2);
    return MESH_MIN (target, cap);
}

typedef struct {
    model_lease_t *model;
    int64_t want;
} resize_t;

static void
s_on_resized (void *arg, redisReply *reply)
{
    resize_t *resize = arg;
    model_lease_t *model = resize->model;
    router_lease_t *self = model->owner;
    model->asking = false;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        model->slots = reply->integer;
        if (reply->integer < resize->want) {
            model->quiet_until_ms = mesh_loop_now_ms (self->loop) + 1000;
            if (self->refusals)
                mesh_metric_inc (self->refusals);
        }
    }
    //  No answer: a block that grew may exist unused (it expires); one
    //  that shrank was shrunk here already
    free (resize);
}

//  Sends the block script: want == slots renews the block as it is
static void
s_model_block (router_lease_t *self, model_lease_t *model, int64_t want)
{
    char leases [300], blocks [300], expiries [300], limit [24], lease [24], size [24], reserve [24];
    snprintf (leases, sizeof leases, "seekmesh:c:{%s}", model->model);
    snprintf (blocks, sizeof blocks, "seekmesh:cb:{%s}", model->model);
    snprintf (expiries, sizeof expiries, "seekmesh:cx:{%s}", model->model);
    snprintf (limit, sizeof limit, "%lld", (long long) model->limit);
    snprintf (lease, sizeof lease, "%lld", (long long) self->settings.lease_ms);
    snprintf (size, sizeof size, "%lld", (long long) want);
    snprintf (reserve, sizeof reserve, "%lld", (long long) self->settings.reserve_percent);
    const char *argv [] = { leases, blocks, expiries, limit, lease, self->name, size, reserve };
    resize_t *resize = calloc (1, sizeof *resize);
    assert (resize);
    *resize = (resize_t) { model, want };
    //  A shrinking block stops being used at once
    if (want < model->slots)
        model->slots = want;
    if (mesh_redis_eval (self->redis, &s_block, s_on_resized, resize, 3,
                         (int) MESH_ARRAY_SIZE (argv), argv, NULL) < 0) {
        free (resize);
        return;
    }
    model->asking = true;
    if (self->exchanges)
        mesh_metric_inc (self->exchanges);
}

static void
s_model_resize (router_lease_t *self, model_lease_t *model, bool return_all)
{
    if (model->asking || !s_enabled (self))
        return;
    int64_t target = s_model_target (self, model);
    if (return_all || mesh_loop_now_ms (self->loop) < model->quiet_until_ms)
        target = 0;
    //  Slots in use are never taken away: the block shrinks to them
    target = MESH_MAX (target, model->inflight);
    bool grow = target > model->slots && (model->inflight + 1) * 4 > model->slots * 3;
    bool shrink = target < model->slots && (target == model->inflight || model->slots > 2 * target);
    if (grow || shrink)
        s_model_block (self, model, target);
}

//  Admission --------------------------------------------------------------

static bool
s_key_covers (key_lease_t *key, const router_hold_t *hold)
{
    return !key->stale
        && (hold->rpm == 0 || key->requests >= 1)
        && (hold->tpm == 0 || key->tokens >= (int64_t) hold->estimate)
        && (hold->budget == 0 || key->budget_tokens >= (int64_t) hold->estimate);
}

//  A lease holds for the limits and budget period it was taken under.
//  When they change (the admin API, a new day), what is held goes back
//  first; then the account starts again under the new ones.
static void
s_key_check (key_lease_t *key, const router_hold_t *hold)
{
    char rpm [300], tpm [300], leases [300], budget [320];
    router_quota_names (hold, rpm, tpm, leases, budget);
    bool same = key->rpm == hold->rpm && key->tpm == hold->tpm && key->budget == hold->budget
             && key->budget_period_s == hold->budget_period_s && strcmp (key->budget_key, budget) == 0;
    if (same)
        return;
    if (key->requests || key->tokens || key->budget_tokens || key->asking || key->inflight) {
        key->stale = true;
        return;
    }
    key->rpm = hold->rpm;
    key->tpm = hold->tpm;
    key->budget = hold->budget;
    key->budget_period_s = hold->budget_period_s;
    memcpy (key->rpm_key, rpm, sizeof key->rpm_key);
    memcpy (key->tpm_key, tpm, sizeof key->tpm_key);
    memcpy (key->budget_key, budget, sizeof key->budget_key);
    key->stale = false;
}

bool
router_lease_admit (router_lease_t *self, router_hold_t *hold, router_decision_t *decision)
{
    if (!s_usable (self))
        return false;
    key_lease_t *key = NULL;
    model_lease_t *model = NULL;
    if (s_key_limited (hold)) {
        key = s_key (self, hold);
        key->count++;
        key->tokens_per_request = key->tokens_per_request > 0
                                ? 0.9 * key->tokens_per_request + 0.1 * hold->estimate
                                : hold->estimate;
        s_key_check (key, hold);
    }
    if (hold->concurrency > 0) {
        model = s_model (self, hold);
        model->count++;
        if (model->limit != hold->concurrency) {
            model->limit = hold->concurrency;
            model->quiet_until_ms = mesh_loop_now_ms (self->loop) + 1000;
        }
    }
    bool covered = (!key || s_key_covers (key, hold))
                && (!model || model->inflight < model->slots);
    if (!covered) {
        if (key)
            s_key_exchange (self, key, false);
        if (model)
            s_model_resize (self, model, false);
        return false;
    }
    memset (decision, 0, sizeof *decision);
    decision->allowed = true;
    if (key) {
        if (hold->rpm > 0)
            key->requests--;
        if (hold->tpm > 0)
            key->tokens -= hold->estimate;
        if (hold->budget > 0)
            key->budget_tokens -= hold->estimate;
        key->inflight++;
        //  Redis's remaining when the lease was taken, and what is left of it here
        snprintf (decision->limits, sizeof decision->limits, "%lld,%lld,%lld,%lld,%lld,%lld",
                  (long long) hold->rpm, (long long) MESH_MAX (key->rpm_left + key->requests, 0),
                  (long long) MESH_MAX (key->rpm_reset_ms, 0), (long long) hold->tpm,
                  (long long) MESH_MAX (key->tpm_left + key->tokens, 0),
                  (long long) MESH_MAX (key->tpm_reset_ms, 0));
        s_key_exchange (self, key, false);
    }
    else
        snprintf (decision->limits, sizeof decision->limits, "0,0,0,0,0,0");
    if (model) {
        model->inflight++;
        model->peak = MESH_MAX (model->peak, model->inflight);
        s_model_resize (self, model, false);
    }
    hold->held = hold->leased = true;
    hold->local = false;
    if (self->admitted)
        mesh_metric_inc (self->admitted);
    return true;
}

void
router_lease_settle (router_lease_t *self, router_hold_t *hold, uint64_t tokens)
{
    char name [270];
    if (s_key_limited (hold)) {
        snprintf (name, sizeof name, "k:%s", hold->key_id);
        key_lease_t *key = mesh_map_get (self->accounts, name);
        if (key) {
            //  The estimate was taken from the lease: the difference comes
            //  back to it (or is owed, when more was used)
            int64_t correction = (int64_t) hold->estimate - (int64_t) tokens;
            if (hold->tpm > 0)
                key->tokens += correction;
            if (hold->budget > 0)
                key->budget_tokens += correction;
            if (key->inflight > 0)
                key->inflight--;
        }
    }
    if (hold->concurrency > 0) {
        snprintf (name, sizeof name, "m:%s", hold->model);
        model_lease_t *model = mesh_map_get (self->accounts, name);
        if (model && model->inflight > 0)
            model->inflight--;
    }
    hold->held = hold->leased = false;
}

//  Ticks: rates, top-ups, give-backs, renewal --------------------------------

static void
s_renew (router_lease_t *self)
{
    size_t cursor = 0;
    const char *name;
    void *account;
    while ((account = mesh_map_next (self->accounts, &cursor, &name))) {
        model_lease_t *model = account;
        if (name [0] == 'm' && model->slots > 0 && !model->asking)
            s_model_block (self, model, model->slots);
    }
}

static int
s_on_tick (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) timer;
    router_lease_t *self = arg;
    double per_second = 1000.0 / (double) self->tick_ms;
    bool ready = s_enabled (self);
    size_t count = mesh_map_size (self->accounts), n = 0;
    void **forget = calloc (count + 1, sizeof *forget);
    assert (forget);
    size_t cursor = 0;
    const char *name;
    void *account;
    while ((account = mesh_map_next (self->accounts, &cursor, &name))) {
        if (name [0] == 'k') {
            key_lease_t *key = account;
            key->rate = 0.5 * key->rate + 0.5 * key->count * per_second;
            key->idle_ticks = key->count || key->inflight ? 0 : key->idle_ticks + 1;
            key->count = 0;
            if (ready)
                s_key_exchange (self, key, key->idle_ticks > 2);
            if (key->idle_ticks > IDLE_TICKS && !key->asking && !key->requests && !key->tokens
            &&  !key->budget_tokens)
                forget [n++] = key;
        }
        else {
            model_lease_t *model = account;
            model->rate = 0.5 * model->rate + 0.5 * model->count * per_second;
            model->idle_ticks = model->count || model->inflight ? 0 : model->idle_ticks + 1;
            model->count = 0;
            if (ready)
                s_model_resize (self, model, model->idle_ticks > 2);
            model->peak = model->inflight;
            if (model->idle_ticks > IDLE_TICKS && !model->asking && !model->slots && !model->inflight)
                forget [n++] = model;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char *account_name = *(char **) forget [i];
        mesh_map_remove (self->accounts, account_name);
        free (account_name);
        free (forget [i]);
    }
    free (forget);
    int64_t now = mesh_loop_now_ms (loop);
    if (ready && now - self->renewed_ms >= self->settings.lease_ms / 3) {
        s_renew (self);
        self->renewed_ms = now;
    }
    if (mesh_map_size (self->accounts))
        mesh_loop_timer_start (loop, &self->tick, self->tick_ms, s_on_tick, self);
    return 0;
}

static void
s_start_ticking (router_lease_t *self)
{
    if (!mesh_timer_armed (&self->tick)) {
        if (!self->renewed_ms)
            self->renewed_ms = mesh_loop_now_ms (self->loop);
        mesh_loop_timer_start (self->loop, &self->tick, self->tick_ms, s_on_tick, self);
    }
}

void
router_lease_renew (router_lease_t *self)
{
    if (s_enabled (self)) {
        s_renew (self);
        self->renewed_ms = mesh_loop_now_ms (self->loop);
    }
}

void
router_lease_release (router_lease_t *self)
{
    size_t cursor = 0;
    const char *name;
    void *account;
    while ((account = mesh_map_next (self->accounts, &cursor, &name))) {
        if (name [0] == 'k')
            s_key_exchange (self, account, true);
        else
            s_model_resize (self, account, true);
    }
}

//  Selftest -----------------------------------------------------------------

void
router_lease_test (bool verbose)
{
    (void) verbose;
    //  Redis is proven by the integration tests; here, the sizing: a slice
    //  of the recent traffic, within the share of each limit, nothing for
    //  quiet keys or small limits
    mesh_loop_t *loop = mesh_loop_new ();
    router_lease_settings_t settings = { .slice_ms = 200, .max_percent = 5, .reserve_percent = 10,
                                         .lease_ms = 60000, .routers = 2, .name = "router-0-1" };
    router_lease_t *lease = router_lease_new (loop, NULL, &settings, NULL);
    assert (lease);
    assert (strcmp (lease->name, "router-0-1") == 0);
    key_lease_t key = { .owner = lease, .rpm = 1000000, .tpm = 100000000, .rate = 1000,
                        .tokens_per_request = 500 };
    int64_t requests, tokens, budget;
    s_key_target (lease, &key, &requests, &tokens, &budget);
    assert (requests == 200 && tokens == 100000 && budget == 0);
    //  5 % of 1,000 rpm is 50: the slice shrinks to it, tokens with it
    key.rpm = 1000;
    s_key_target (lease, &key, &requests, &tokens, &budget);
    assert (requests == 50 && tokens == 25000);
    //  10 rpm: 5 % is half a request, too little for a lease
    key.rpm = 10;
    s_key_target (lease, &key, &requests, &tokens, &budget);
    assert (requests == 0 && tokens == 0);
    //  A quiet key: 10 requests/s make 2 a slice, fewer than the minimum
    key.rpm = 1000000;
    key.rate = 10;
    s_key_target (lease, &key, &requests, &tokens, &budget);
    assert (requests == 0);
    //  A budget alone: tokens only
    key = (key_lease_t) { .owner = lease, .budget = 1000000000, .rate = 500, .tokens_per_request = 100 };
    s_key_target (lease, &key, &requests, &tokens, &budget);
    assert (requests == 0 && tokens == 0 && budget == 10000);

    //  A model block: the recent peak and half again, within its share
    model_lease_t model = { .owner = lease, .limit = 1000000, .rate = 1000, .peak = 64 };
    assert (s_model_target (lease, &model) == 96);
    model.limit = 100;                  //  less its 10 % reserve, over 2 routers: 45
    assert (s_model_target (lease, &model) == 45);
    model.limit = 8;                    //  3 a router, below the minimum
    assert (s_model_target (lease, &model) == 0);
    model.limit = 64;                   //  28 a router; 16 in use: 24
    model.peak = 16;
    assert (s_model_target (lease, &model) == 24);

    //  Without Redis nothing is admitted from a lease
    router_hold_t hold = { .key_id = "k", .model = "m", .rpm = 1000000, .estimate = 10 };
    router_decision_t decision;
    assert (!router_lease_admit (lease, &hold, &decision));
    assert (!hold.held && !hold.leased);
    router_lease_destroy (&lease);
    router_lease_destroy (&lease);
    mesh_loop_destroy (&loop);
}
