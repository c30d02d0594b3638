/* jsoncall: JSON in, JSON out, through the descriptors. */
#include "jsoncall.h"

#include <stdio.h>

#include "pbjson.h"

int jsoncall(client_t *c, const char *service, const char *method, const json_t *request,
             const char *key, int timeout_ms, int attempts, int flags, status_t *status,
             json_t **reply, char **message, char *err, size_t errlen)
{
    const ProtobufCServiceDescriptor *svc = pbjson_service_type(service);
    const ProtobufCMethodDescriptor *m =
        svc ? protobuf_c_service_descriptor_get_method_by_name(svc, method) : NULL;
    ProtobufCMessage *req, *resp = NULL;
    char full[256];

    if (reply)
        *reply = NULL;
    if (!m) {
        snprintf(err, errlen, "%s has no method %s", service, method);
        return -1;
    }
    if (!(req = pbjson_to_message(m->input, request, err, errlen)))
        return -1;
    snprintf(full, sizeof full, "%s/%s", service, method);
    *status = client_call(c, full, req, m->output, &resp, key, timeout_ms, attempts, message);
    if (resp && reply)
        *reply = pbjson_from_message(resp, flags);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    protobuf_c_message_free_unpacked(req, NULL);
    return 0;
}
