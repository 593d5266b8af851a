import { createRoute } from "@hono/zod-openapi";
import type { ApiDeps } from "../context.ts";
import { failure, jsonResponse } from "../responses.ts";
import {
  PauseQueueQuerySchema,
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

  return { listQueues, pauseQueue, resumeQueue };
}
