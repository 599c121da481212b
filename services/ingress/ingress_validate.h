/*  ingress_validate: checks a chat completion request body before it
    enters the mesh, and says exactly what is wrong.

    It checks what the gateway relies on (model, messages, stream) and the
    shapes and ranges of the parameters clients most often get wrong; every
    other field is passed on untouched, as COMPAT.md requires.  Duplicate
    keys are refused: two parsers that disagree on which one wins are a
    gift to an attacker.  It also extracts the request's parameters for the
    audit record.  Any thread; no state.                                     */
#ifndef INGRESS_VALIDATE_H
#define INGRESS_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Room for the parameters' JSON: every value in it is bounded (strings
//  cut, lists reduced to a count or true), so it always fits
#define INGRESS_PARAMS_MAX 2048

typedef struct {
    //  When valid (model also when it is the only thing that is)
    char model [256];
    bool stream;
    char user [128];            //  the client's `user` (or user_id), for sticky A/B
    char session [160];         //  metadata.session_id, when has_session (its form
    bool has_session;           //  is ingress_session's to check)
    uint32_t estimate;          //  tokens it may cost: prompt + n x max completion
    uint32_t prompt_estimate;   //  of which the prompt
    //  For the audit record: a compact JSON object of the parameters the
    //  request has (temperature, top_p, max_tokens, max_completion_tokens,
    //  stream, n, stop: true, tools: a count, tool_choice, response_format:
    //  its type, seed, user), "{}" when it has none
    char params [INGRESS_PARAMS_MAX];
    //  When not: the status and OpenAI error fields to answer with
    int status;
    char message [512];
    char param [96];
    char code [48];
} ingress_check_t;

//  Returns 0 when body is a valid request, else -1 with the error filled.
//  default_max_tokens stands in for max_tokens in the estimate when the
//  request does not say.
int  ingress_validate (const char *body, size_t len, uint32_t default_max_tokens,
                       ingress_check_t *check);

void ingress_validate_test (bool verbose);

#endif
