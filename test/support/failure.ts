/** The error a call failed with; a call that succeeds fails the test. */
export const failureOf = (call: Promise<unknown>): Promise<Error> =>
  call.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (error: Error) => error,
  );
