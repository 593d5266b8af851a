import { createRoute } from "@hono/zod-openapi";
import type { ApiDeps } from "../context.ts";
import { failure, jsonResponse } from "../responses.ts";
import {
  PauseQueueQuerySchema,
  QueueKeyListSchema,
  QueueKeysQuerySchema,
  QueueLimitsSchema,
  QueueLimitsStateSchema,
  QueueListSchema,
  QueueNameParamsSchema,
  QueueSettingsSchema,
} from "../schemas.ts";

const invalidName = failure(
  "The queue name or a query parameter is invalid",
  ["VALIDATION_FAILED"],
  {
    message: "invalid path: name",
    details: [
      {
        path: "name",
        message: "a queue name: 1-128 of A-Z a-z 0-9 _ . : -",
        code: "invalid_format",
      },
    ],
  },
);

const unknownQueue = failure(
  "No queue of this name is known: no job, no worker, no task default, no setting names it",
  ["QUEUE_NOT_FOUND"],
  {
    message: 'no queue "defualt" is known; to pause it before its first job, add ?create=true',
    details: { knownQueues: ["default"] },
  },
);

/** The queue operations: stats of every queue, pause and resume. */
export function queueRouteDefinitions(deps: Pick<ApiDeps, "examples">) {
  const { examples } = deps;
  const listQueues = createRoute({
    method: "get",
    path: "/queues",
    operationId: "listQueues",
    tags: ["queues"],
    summary: "Queues with counts, oldest ready age, pause flag and workers",
    description:
      "Every queue something names: its jobs, a worker that serves it, or a pause setting.",
    responses: {
      200: jsonResponse("Every known queue", QueueListSchema, examples.queues),
    },
  });

  const pauseQueue = createRoute({
    method: "post",
    path: "/queues/{name}/pause",
    operationId: "pauseQueue",
    tags: ["queues"],
    summary: "Pause a queue",
    description:
      "No worker claims from a paused queue until it is resumed; running jobs finish. A name nobody knows is refused unless `create=true`, so a typo cannot leave a phantom paused queue behind.",
    request: { params: QueueNameParamsSchema, query: PauseQueueQuerySchema },
    responses: {
      200: jsonResponse("The queue's settings", QueueSettingsSchema, examples.queueSettings(true)),
      400: invalidName,
      404: unknownQueue,
    },
  });

  const resumeQueue = createRoute({
    method: "post",
    path: "/queues/{name}/resume",
    operationId: "resumeQueue",
    tags: ["queues"],
    summary: "Resume a queue",
    description: "Workers claim from it again at once.",
    request: { params: QueueNameParamsSchema },
    responses: {
      200: jsonResponse("The queue's settings", QueueSettingsSchema, examples.queueSettings(false)),
      400: invalidName,
      404: unknownQueue,
    },
  });

  const getQueueLimits = createRoute({
    method: "get",
    path: "/queues/{name}/limits",
    operationId: "getQueueLimits",
    tags: ["flow control"],
    summary: "A queue's limits and their state",
    description:
      "Its concurrency, per-key concurrency, rate limits and fairness, who set them, the jobs holding its slots, the tokens left, and the pending jobs a limit holds back.",
    request: { params: QueueNameParamsSchema },
    responses: {
      200: jsonResponse("The queue's limits", QueueLimitsStateSchema, examples.limitsState),
      400: invalidName,
      404: unknownQueue,
    },
  });

  const setQueueLimits = createRoute({
    method: "put",
    path: "/queues/{name}/limits",
    operationId: "setQueueLimits",
    tags: ["flow control"],
    summary: "Set a queue's limits",
    description:
      "Replaces all of its limits (what is left out is removed), across every worker within a second. Lowering a limit stops new starts; running jobs are not aborted. Overrides the task definitions' defaults until deleted. Jobs over a limit wait as pending and never burn an attempt.",
    request: {
      params: QueueNameParamsSchema,
      query: PauseQueueQuerySchema,
      body: {
        required: true,
        content: { "application/json": { schema: QueueLimitsSchema, examples: examples.limits } },
      },
    },
    responses: {
      200: jsonResponse("The queue's limits", QueueLimitsStateSchema, examples.limitsState),
      400: failure(
        "The body, the queue name or a query parameter is invalid",
        ["VALIDATION_FAILED"],
        {
          message: "invalid body: keyConcurrency",
          details: [
            {
              path: "keyConcurrency",
              message: "Too small: expected number to be >=1",
              code: "too_small",
            },
          ],
        },
      ),
      404: unknownQueue,
    },
  });

  const deleteQueueLimits = createRoute({
    method: "delete",
    path: "/queues/{name}/limits",
    operationId: "deleteQueueLimits",
    tags: ["flow control"],
    summary: "Remove a queue's limits",
    description:
      "Its jobs start as fast as workers take them again; task definitions' defaults apply again as workers start.",
    request: { params: QueueNameParamsSchema },
    responses: {
      200: jsonResponse("The queue's limits, now none", QueueLimitsStateSchema, {
        ...examples.limitsState,
        limited: false,
        flow: {
          ...examples.limitsState.flow,
          keyConcurrency: null,
          rateLimit: null,
          fair: false,
          source: null,
          tokens: null,
          throttled: 0,
        },
      }),
      400: invalidName,
      404: unknownQueue,
    },
  });

  const listQueueKeys = createRoute({
    method: "get",
    path: "/queues/{name}/keys",
    operationId: "listQueueKeys",
    tags: ["flow control"],
    summary: "The busiest concurrency keys of a queue",
    description:
      "Keys by jobs running, then by least recently served: their running jobs, tokens left and jobs ready. Empty when the queue has no per-key limit and is not fair.",
    request: { params: QueueNameParamsSchema, query: QueueKeysQuerySchema },
    responses: {
      200: jsonResponse("Its keys", QueueKeyListSchema, examples.keys),
      400: invalidName,
      404: unknownQueue,
    },
  });

  return {
    listQueues,
    pauseQueue,
    resumeQueue,
    getQueueLimits,
    setQueueLimits,
    deleteQueueLimits,
    listQueueKeys,
  };
}
