/* The floor of the boot benchmark: the smallest /init there is. It reboots
 * at once; QEMU runs with -no-reboot, so the guest's reboot ends QEMU. The
 * time from starting QEMU to its exit is what the kernel and QEMU cost
 * before any Cairn code runs. Built static by the bench (gcc -static -Os). */
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}
